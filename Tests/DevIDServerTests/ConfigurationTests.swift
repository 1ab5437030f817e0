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

    /// `DEVID_RABBITMQ_MANAGEMENT_USER=... DEVID_RABBITMQ_MANAGEMENT_PASSWORD=... devid serve
    /// --rabbitmq-management-url URL` (docs/integrations/rabbitmq.md) logged in as `guest` without a password: the login was read only with a URL
    /// from the environment or file. It is now kept without one, for the flag (RabbitMQDocTests runs the command).
    @Test func rabbitMQLoginWithoutURL() async throws {
        let login = try await ServerConfiguration.load(
            configFile: nil,
            environment: [
                "DEVID_RABBITMQ_MANAGEMENT_USER": "devid-closer", "DEVID_RABBITMQ_MANAGEMENT_PASSWORD": "s3cret-login",
            ])
        #expect(login.rabbitMQManagement == nil, "no URL: nothing to close connections with")
        #expect(login.rabbitMQManagementLogin.user == "devid-closer")
        #expect(login.rabbitMQManagementLogin.password == "s3cret-login")
        #expect(!"\(login)".contains("s3cret"), "never printed")
        #expect(!"\(login.rabbitMQManagementLogin)".contains("s3cret"), "never printed")
        let withURL = try await ServerConfiguration.load(
            configFile: nil,
            environment: [
                "DEVID_RABBITMQ_MANAGEMENT_URL": "http://127.0.0.1:15672", "DEVID_RABBITMQ_MANAGEMENT_USER": "u",
            ])
        #expect(
            withURL.rabbitMQManagement == RabbitMQManagement(url: "http://127.0.0.1:15672", user: "u", password: ""))
        let defaults = try await ServerConfiguration.load(configFile: nil, environment: [:])
        #expect(defaults.rabbitMQManagementLogin.user == "guest")
    }

    @Test func missingConfigFileIsAnError() async throws {
        await #expect(throws: (any Error).self) {
            try await ServerConfiguration.load(configFile: "/nonexistent/devid.json", environment: [:])
        }
    }
}
