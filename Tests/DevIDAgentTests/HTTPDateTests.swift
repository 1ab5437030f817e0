import Foundation
import Testing

@testable import DevIDAgent

@Suite struct HTTPDateTests {
    @Test func parsesIMFFixdate() {
        let date = HTTPDate.parse("Sun, 06 Nov 1994 08:49:37 GMT")
        #expect(date == Date(timeIntervalSince1970: 784_111_777))
    }

    @Test(arguments: [
        "", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun, 06 Nov 1994 08:49:37 PST", "Sun, 32 Nov 1994 08:49:37 GMT",
    ])
    func refusesOtherForms(_ text: String) {
        #expect(HTTPDate.parse(text) == nil)
    }

    @Test func retryAfterSecondsOrDate() {
        let server = Date(timeIntervalSince1970: 784_111_777)
        #expect(HTTPDate.retryAfterSeconds("120", serverDate: nil) == 120)
        #expect(HTTPDate.retryAfterSeconds("Sun, 06 Nov 1994 08:50:37 GMT", serverDate: server) == 60)
        #expect(HTTPDate.retryAfterSeconds("soon", serverDate: server) == nil)
        #expect(HTTPDate.retryAfterSeconds(nil, serverDate: server) == nil)
    }
}
