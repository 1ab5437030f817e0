import ArgumentParser

@main
struct DevIDCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "devid",
        abstract: "DevID: per-device identity for IoT fleets (bootstrap, enroll, operate, rotate, revoke).",
        subcommands: [Serve.self, CA.self, Tenant.self, Device.self, Audit.self]
    )
}
