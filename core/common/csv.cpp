#include "whisker/common/csv.h"

#include "whisker/common/errors.h"

namespace whisker {

std::vector<CsvRow> parse_csv(const std::string& text) {
    std::vector<CsvRow> rows;
    CsvRow row;
    std::string field;
    bool in_quotes = false, field_started = false;
    std::size_t line = 1, quote_line = 0;
    std::size_t i = 0;
    if (text.size() >= 3 && text.compare(0, 3, "\xEF\xBB\xBF") == 0) i = 3;
    auto end_field = [&] {
        row.push_back(std::move(field));
        field.clear();
        field_started = false;
    };
    auto end_row = [&] {
        end_field();
        if (!(row.size() == 1 && row[0].empty())) rows.push_back(std::move(row));
        row.clear();
    };
    for (; i < text.size(); ++i) {
        const char c = text[i];
        if (in_quotes) {
            if (c == '"') {
                if (i + 1 < text.size() && text[i + 1] == '"') { field += '"'; ++i; }
                else in_quotes = false;
            } else {
                if (c == '\n') ++line;
                field += c;
            }
            continue;
        }
        if (c == '"' && !field_started) { in_quotes = true; field_started = true; quote_line = line; }
        else if (c == ',') end_field();
        else if (c == '\r') { /* CRLF: the \n ends the row */ }
        else if (c == '\n') { end_row(); ++line; }
        else { field += c; field_started = true; }
    }
    if (in_quotes) throw UserError("CSV: the quote opened on line " + std::to_string(quote_line) + " is never closed");
    if (field_started || !row.empty()) end_row();
    return rows;
}

std::string csv_escape(const std::string& f) {
    if (f.find_first_of(",\"\r\n") == std::string::npos) return f;
    std::string out = "\"";
    for (char c : f) {
        if (c == '"') out += '"';
        out += c;
    }
    return out + "\"";
}

}  // namespace whisker
