import Logging
import NIOCore

/// The first handler of every accepted connection: takes a slot from the listener's `ConnectionCounter`, closes
/// the connection at once when a cap is reached, and gives the slot back when the connection goes away.
final class ConnectionLimitHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny

    private let counter: ConnectionCounter
    private let logger: Logger
    private var address: String?

    init(counter: ConnectionCounter, logger: Logger) {
        self.counter = counter
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let address = context.channel.remoteAddress?.ipAddress ?? "unknown"
        if counter.acquire(address) {
            self.address = address
        } else {
            logger.debug("connection refused: over the connection cap", metadata: ["peer": "\(address)"])
            context.close(promise: nil)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        releaseOnce()
    }

    func channelInactive(context: ChannelHandlerContext) {
        releaseOnce()
        context.fireChannelInactive()
    }

    private func releaseOnce() {
        if let address {
            counter.release(address)
            self.address = nil
        }
    }
}

@available(*, unavailable)
extension ConnectionLimitHandler: Sendable {}
