#pragma once
// A small RFC 4180 CSV reader/writer (quoted fields, embedded commas, quotes and newlines,
// CRLF or LF line ends, an optional UTF-8 BOM).

#include <string>
#include <vector>

namespace whisker {

using CsvRow = std::vector<std::string>;

// Parses the whole text. Throws UserError (with the line number) on an unterminated quote.
std::vector<CsvRow> parse_csv(const std::string& text);
// Quotes a field when it holds a comma, quote or line break.
std::string csv_escape(const std::string& field);

}  // namespace whisker
