/// Characters that may end, split or hide a line of a text file: C0 controls (U+0000–U+001F, tab, CR and LF
/// included), DEL (U+007F), C1 controls (U+0080–U+009F, NEL U+0085 included) and the Unicode line and paragraph
/// separators U+2028 and U+2029.
///
/// Topic rules are refused when they hold one (a rule becomes a line of Mosquitto's ACL file), and every broker file
/// writer checks each entry it writes with ``lineProblem(_:)``, so a value that slipped past validation cannot add a
/// line of its own.
public enum ControlCharacters {
    public static func isForbidden(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x00...0x1F, 0x7F...0x9F, 0x2028, 0x2029: true
        default: false
        }
    }

    /// The first forbidden character of `text`, if any.
    public static func first(in text: String) -> Unicode.Scalar? {
        text.unicodeScalars.first(where: isForbidden)
    }

    /// `control character U+000A not allowed` for the first forbidden character of `text`; nil if it has none.
    public static func lineProblem(_ text: String) -> String? {
        guard let scalar = first(in: text) else { return nil }
        return "control character \(name(scalar)) not allowed"
    }

    /// `U+000A`: at least four upper-case hex digits.
    public static func name(_ scalar: Unicode.Scalar) -> String {
        let hex = String(scalar.value, radix: 16, uppercase: true)
        return "U+" + String(repeating: "0", count: max(0, 4 - hex.count)) + hex
    }
}
