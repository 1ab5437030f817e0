import DevIDServer
import DevIDTesting
import Foundation
import Testing

@Suite("Configuration precedence")
struct ConfigurationTests {
    @Test func defaultsWithoutFileOrEnvironment() async throws {
        let configuration = try await ServerConfiguration.load(configFile: nil, environment: [:])
        #expect(configuration.dataDirectory == "./devid-data")
        #expect(configuration.estPort == 8443)
        #expect(configuration.opsPort == 8080)
        #expect(configuration.estHost == "127.0.0.1")
    }

    @Test func environmentOverridesFileOverridesDefaults() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let file = try directory.write(
            "devid.json",
            #"{"data": {"dir": "/srv/devid"}, "est": {"port": 9443}, "ops": {"port": 9080}, "trust": {"domain": "file.example"}}"#)
        let fromFile = try await ServerConfiguration.load(configFile: file, environment: [:])
        #expect(fromFile.dataDirectory == "/srv/devid")
        #expect(fromFile.estPort == 9443)
        #expect(fromFile.trustDomain == "file.example")

        let withEnvironment = try await ServerConfiguration.load(
            configFile: file, environment: ["DEVID_EST_PORT": "10443", "DEVID_CA_PASSPHRASE": "s3cret"])
        #expect(withEnvironment.estPort == 10443)
        #expect(withEnvironment.opsPort == 9080)
        #expect(withEnvironment.caPassphrase == "s3cret")
        #expect(!String(describing: withEnvironment).contains("s3cret"))
    }

    @Test("health thresholds: health.<name with dots> in the file, DEVID_HEALTH_<NAME> in the environment")
    func healthThresholds() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let file = try directory.write(
            "devid.json", #"{"health": {"expiry": {"wave": {"percent": 40}}, "ca": {"warning": {"days": 120}}}}"#)
        let fromFile = try await ServerConfiguration.load(configFile: file, environment: [:])
        #expect(fromFile.healthThresholds.expiryWavePercent == 40)
        #expect(fromFile.healthThresholds.caWarningDays == 120)
        #expect(fromFile.healthThresholds.staleAfterDays == 0, "the default")
        let withEnvironment = try await ServerConfiguration.load(
            configFile: file,
            environment: ["DEVID_HEALTH_EXPIRY_WAVE_PERCENT": "15", "DEVID_HEALTH_STALE_AFTER_DAYS": "5"])
        #expect(withEnvironment.healthThresholds.expiryWavePercent == 15)
        #expect(withEnvironment.healthThresholds.staleAfterDays == 5)
        #expect(withEnvironment.healthThresholds.caWarningDays == 120)
        let negative = try await ServerConfiguration.load(
            configFile: nil, environment: ["DEVID_HEALTH_REFUSAL_SPIKE_MIN": "-3"])
        #expect(negative.healthThresholds.refusalSpikeMin == 20, "a negative value is ignored")
    }

    @Test func missingConfigFileIsAnError() async throws {
        await #expect(throws: (any Error).self) {
            try await ServerConfiguration.load(configFile: "/nonexistent/devid.json", environment: [:])
        }
    }
}
