import ArgumentParser

@main
struct DevIDCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "devid",
        abstract: "DevID: per-device identity for IoT fleets (bootstrap, enroll, operate, rotate, revoke).",
        subcommands: [Serve.self, CA.self, Factory.self, Tenant.self, Device.self, Token.self, AdminTokenCommand.self, Rotate.self, Revoke.self, Cert.self, CRLCommand.self, Profile.self, Audit.self, Agent.self, PolicyCommand.self, SettingsCommand.self, RegistryCommand.self, Export.self, Health.self, Simulate.self]
    )
}
