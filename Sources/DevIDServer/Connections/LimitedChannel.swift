public import HummingbirdCore
public import Logging
public import NIOCore

/// Wraps a listener's child channel so every accepted connection first passes the listener's connection caps.
public struct LimitedChannel<BaseChannel: ServerChildChannel>: ServerChildChannel {
    public typealias Value = BaseChannel.Value

    let counter: ConnectionCounter
    var baseChannel: BaseChannel

    init(_ baseChannel: BaseChannel, counter: ConnectionCounter) {
        self.baseChannel = baseChannel
        self.counter = counter
    }

    public func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        let counter = self.counter
        return channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(ConnectionLimitHandler(counter: counter, logger: logger))
        }.flatMap {
            self.baseChannel.setup(channel: channel, logger: logger)
        }
    }

    public func handle(value: BaseChannel.Value, logger: Logger) async {
        await self.baseChannel.handle(value: value, logger: logger)
    }
}

extension LimitedChannel: HTTPChannelHandler where BaseChannel: HTTPChannelHandler {
    public var responder: HTTPChannelHandler.Responder {
        self.baseChannel.responder
    }
}
