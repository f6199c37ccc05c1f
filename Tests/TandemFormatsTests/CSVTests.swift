import TandemCore
import Testing

@testable import TandemFormats

// MARK: - CSV

@Suite struct CSVTests {
    static func parse(
        _ text: String, label: String? = nil
    ) throws -> (features: HostArray, labels: HostArray?, columns: [String]) {
        try CSV.parse(Array(text.utf8), name: "t.csv", labelColumn: label)
    }

    @Test func featuresAndLabels() throws {
        let table = try Self.parse("a,b,class\n1,2.5,0\n-3,4e2,2\n", label: "class")
        #expect(table.columns == ["a", "b"])
        #expect(table.features == HostArray(shape: [2, 2], floats: [1, 2.5, -3, 400]))
        #expect(table.labels == HostArray(shape: [2], integers: [0, 2]))
    }

    @Test func labelInTheMiddle() throws {
        let table = try Self.parse("x,y,z\n1,7,2\n3,8,4", label: "y")
        #expect(table.columns == ["x", "z"])
        #expect(table.features.floats() == [1, 2, 3, 4])
        #expect(try table.labels?.ints() == [7, 8])
    }

    @Test func noLabels() throws {
        let table = try Self.parse("x,y\n1,2\n")
        #expect(table.labels == nil)
        #expect(table.columns == ["x", "y"])
        #expect(table.features.shape == [1, 2])
    }

    @Test func whitespaceQuotesAndLineEndings() throws {
        let text = "\u{FEFF} \"first \"\"col\"\"\" , second,\"label\"\r\n  1 ,\t\"2\" , 3 \r\n\r\n\n4,5,\"6.0\"\r\n"
        let table = try Self.parse(text, label: "label")
        #expect(table.columns == ["first \"col\"", "second"])
        #expect(table.features.floats() == [1, 2, 4, 5])
        #expect(try table.labels?.ints() == [3, 6])
    }

    @Test func quotedCellSpanningLinesKeepsLineNumbers() {
        expectFormatError("line 4", "column 'b'", "non-numeric", "'oops'") {
            _ = try Self.parse("a,b\n\"1\n\",2\n3,oops\n")
        }
    }

    @Test func readsFromDisk() throws {
        try withTemporaryDirectory { directory in
            let path = directory + "/iris.csv"
            try writeBytes(Array("sepal,petal,species\n5.1,1.4,0\n6.3,4.9,1\n".utf8), to: path)
            let table = try CSV.read(path: path, labelColumn: "species")
            #expect(table.features.shape == [2, 2])
            #expect(try table.labels?.ints() == [0, 1])
        }
    }

    // MARK: Errors

    @Test func rejectsBadTables() {
        expectFormatError("t.csv", "empty file", "header") { _ = try Self.parse("") }
        expectFormatError("empty file") { _ = try Self.parse("\n \n") }
        expectFormatError("no data rows") { _ = try Self.parse("a,b\n") }
        expectFormatError("t.csv", "line 3", "column 'b'", "non-numeric", "'x1'", "expected a number") {
            _ = try Self.parse("a,b\n1,2\n3,x1\n")
        }
        expectFormatError("line 2", "column 'a'", "non-numeric", "''") { _ = try Self.parse("a,b\n,2\n") }
        expectFormatError("line 2", "column 'a'", "not finite") { _ = try Self.parse("a,b\ninf,2\n") }
        expectFormatError("line 2", "not finite") { _ = try Self.parse("a,b\n1e39,2\n") }
        expectFormatError("line 3 has 3 cells", "expected 2") { _ = try Self.parse("a,b\n1,2\n1,2,3\n") }
        expectFormatError("line 2 has 1 cells", "expected 2") { _ = try Self.parse("a,b\n1\n") }
        expectFormatError("line 2", "label column 'y'", "non-integer", "'2.5'", "class id") {
            _ = try Self.parse("x,y\n1,2.5\n", label: "y")
        }
        expectFormatError("no column 'label'", "'x', 'y'") { _ = try Self.parse("x,y\n1,2\n", label: "label") }
        expectFormatError("line 2", "unterminated quoted cell") { _ = try Self.parse("x,y\n\"1,2\n") }
        expectFormatError("line 1", "after a closing quote") { _ = try Self.parse("\"x\"y,z\n1,2\n") }
        expectFormatError("duplicate column name 'x'") { _ = try Self.parse("x,x\n1,2\n") }
        expectFormatError("not valid UTF-8") { _ = try CSV.parse([0x61, 0xFF, 0x0A], name: "t.csv") }
    }
}
