#include "whisker/kaggle/submission_check.h"

#include "whisker/common/csv.h"
#include "whisker/common/errors.h"
#include "whisker/common/files.h"

#include <zlib.h>

#include <cmath>
#include <cstdlib>
#include <unordered_map>

namespace fs = std::filesystem;

namespace whisker::kaggle {

namespace {
bool parse_number(const std::string& s, double& out) {
    if (s.empty()) return false;
    char* end = nullptr;
    out = std::strtod(s.c_str(), &end);
    return end && *end == '\0' && std::isfinite(out);
}
std::string examples(const std::vector<std::string>& items, std::size_t n = 5) {
    std::string out;
    for (std::size_t i = 0; i < items.size() && i < n; ++i) out += (i ? ", " : "") + items[i];
    if (items.size() > n) out += ", …";
    return out;
}
}  // namespace

std::string read_text_maybe_gzip(const fs::path& file) {
    const std::string bytes = read_file(file);
    if (bytes.size() < 2 || static_cast<unsigned char>(bytes[0]) != 0x1f || static_cast<unsigned char>(bytes[1]) != 0x8b)
        return bytes;
    z_stream zs{};
    if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) throw UserError("cannot decompress '" + file.string() + "'");
    zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(bytes.data()));
    zs.avail_in = static_cast<uInt>(bytes.size());
    std::string out;
    char buf[1 << 16];
    int rc;
    do {
        zs.next_out = reinterpret_cast<Bytef*>(buf);
        zs.avail_out = sizeof buf;
        rc = inflate(&zs, Z_NO_FLUSH);
        if (rc != Z_OK && rc != Z_STREAM_END) {
            inflateEnd(&zs);
            throw UserError("'" + file.string() + "' is not a valid gzip file (truncated?)");
        }
        out.append(buf, sizeof buf - zs.avail_out);
    } while (rc != Z_STREAM_END);
    inflateEnd(&zs);
    return out;
}

std::string SubmissionCheck::summary() const {
    std::string out;
    for (const auto& p : problems) out += p + "\n";
    return out;
}

SubmissionCheck check_submission(const fs::path& file, const fs::path& sample, double min_value, double max_value) {
    SubmissionCheck check;
    const auto sub = parse_csv(read_text_maybe_gzip(file));
    const auto ref = parse_csv(read_text_maybe_gzip(sample));
    if (ref.empty()) throw UserError("'" + sample.string() + "' is empty");
    if (sub.empty()) {
        check.problems.push_back("the file is empty");
        return check;
    }
    const CsvRow& header = ref[0];
    if (sub[0] != header) {
        std::string got, want;
        for (const auto& h : sub[0]) got += (got.empty() ? "" : ",") + h;
        for (const auto& h : header) want += (want.empty() ? "" : ",") + h;
        check.problems.push_back("the header is '" + got + "', the competition expects '" + want + "'");
        return check;
    }
    // Which columns hold numbers (judged from the sample's first row).
    std::vector<bool> numeric(header.size(), false);
    if (ref.size() > 1)
        for (std::size_t c = 1; c < header.size() && c < ref[1].size(); ++c) {
            double v;
            numeric[c] = parse_number(ref[1][c], v);
        }
    std::unordered_map<std::string, std::size_t> expected;
    for (std::size_t r = 1; r < ref.size(); ++r) expected.emplace(ref[r][0], r);

    std::unordered_map<std::string, std::size_t> seen;  // id -> line
    std::vector<std::string> duplicates, unknown, bad_width, not_numbers, out_of_range;
    for (std::size_t r = 1; r < sub.size(); ++r) {
        const CsvRow& row = sub[r];
        const std::string line = std::to_string(r + 1);
        ++check.rows;
        if (row.size() != header.size()) {
            bad_width.push_back("line " + line + " (" + std::to_string(row.size()) + " fields)");
            continue;
        }
        const std::string& id = row[0];
        auto [it, inserted] = seen.emplace(id, r + 1);
        if (!inserted) duplicates.push_back("'" + id + "' (lines " + std::to_string(it->second) + " and " + line + ")");
        if (!expected.count(id)) unknown.push_back("'" + id + "' (line " + line + ")");
        for (std::size_t c = 1; c < row.size(); ++c) {
            if (!numeric[c]) continue;
            double v;
            if (!parse_number(row[c], v)) not_numbers.push_back("line " + line + ": '" + row[c] + "'");
            else if (v < min_value || v > max_value) out_of_range.push_back("line " + line + ": " + row[c]);
        }
    }
    std::vector<std::string> missing;
    for (std::size_t r = 1; r < ref.size(); ++r)
        if (!seen.count(ref[r][0])) missing.push_back("'" + ref[r][0] + "'");

    auto add = [&](const std::vector<std::string>& items, const std::string& what) {
        if (!items.empty()) check.problems.push_back(std::to_string(items.size()) + " " + what + ": " + examples(items));
    };
    add(bad_width, "rows with the wrong number of fields");
    add(duplicates, "ids appear more than once");
    add(missing, "ids of the sample submission are missing");
    add(unknown, "ids are not in the sample submission");
    add(not_numbers, "values are not numbers");
    char range[64];
    std::snprintf(range, sizeof range, "values are outside [%g, %g]", min_value, max_value);
    add(out_of_range, range);
    return check;
}

}  // namespace whisker::kaggle
