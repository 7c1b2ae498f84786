/// Code blocks of README.md marked `<!-- test:NAME -->`, so tests run exactly what users copy.
public enum Readme {
    /// The snippet marked `test:NAME` in `file` (README.md, or another document of the repository).
    public static func snippet(_ name: String, in file: String = "README.md") throws -> String {
        let text = try Repository.read(file)
        guard let marker = text.range(of: "<!-- test:\(name) -->") else {
            throw SnippetError(message: "\(file) has no snippet marked test:\(name)")
        }
        let rest = text[marker.upperBound...]
        guard let open = rest.range(of: "```"), let lineEnd = rest[open.upperBound...].firstIndex(of: "\n"),
              let close = rest[lineEnd...].range(of: "\n```") else {
            throw SnippetError(message: "snippet test:\(name) has no fenced code block")
        }
        return String(rest[rest.index(after: lineEnd)..<close.lowerBound]) + "\n"
    }

    public struct SnippetError: Error, CustomStringConvertible {
        public var message: String
        public var description: String { message }
    }
}
