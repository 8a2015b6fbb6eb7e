#include "whisker/common/archive.h"

#include "whisker/common/errors.h"

#include <quazip.h>
#include <quazipfile.h>
#include <quazipfileinfo.h>
#include <quazipnewinfo.h>
#include <zlib.h>

#include <QDateTime>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sys/stat.h>

namespace fs = std::filesystem;

namespace whisker {

namespace {

QString qpath(const fs::path& p) { return QString::fromStdString(p.string()); }

constexpr std::uint32_t kUnixLinkBits = 0120000;
constexpr std::uint32_t kUnixTypeMask = 0170000;

ArchiveEntry entry_from(const QuaZipFileInfo64& info) {
    ArchiveEntry e;
    e.name = info.name.toStdString();
    e.size = info.uncompressedSize;
    e.crc32 = info.crc;
    e.is_directory = !e.name.empty() && e.name.back() == '/';
    const std::uint32_t unix_mode = info.externalAttr >> 16;
    e.is_symlink = (unix_mode & kUnixTypeMask) == kUnixLinkBits;
    return e;
}

void open_for_reading(QuaZip& zip, const fs::path& path) {
    std::error_code ec;
    if (!fs::exists(path, ec))
        throw UserError("archive '" + path.string() + "' does not exist");
    if (!zip.open(QuaZip::mdUnzip))
        throw UserError("'" + path.string() + "' is not a readable zip archive (QuaZip error " +
                            std::to_string(zip.getZipError()) + ")",
                        "the file may be incomplete or corrupt: download it again");
}

}  // namespace

bool is_safe_entry_name(const std::string& name) {
    if (name.empty()) return false;
    if (name.front() == '/' || name.front() == '\\') return false;
    if (name.find('\\') != std::string::npos) return false;       // Windows separators
    if (name.size() >= 2 && name[1] == ':') return false;         // drive letters
    if (name.find('\0') != std::string::npos) return false;
    for (const auto& part : fs::path(name)) {
        if (part == "..") return false;
    }
    return true;
}

// minizip refuses to open a zip without entries (a bare 22-byte end record), which is valid.
bool is_empty_zip(const fs::path& path) {
    std::error_code ec;
    if (fs::file_size(path, ec) != 22 || ec) return false;
    std::ifstream in(path, std::ios::binary);
    char sig[4] = {};
    in.read(sig, 4);
    return std::memcmp(sig, "PK\x05\x06", 4) == 0;
}

std::vector<ArchiveEntry> list_archive(const fs::path& path) {
    if (is_empty_zip(path)) return {};
    QuaZip zip(qpath(path));
    open_for_reading(zip, path);
    std::vector<ArchiveEntry> entries;
    for (bool more = zip.goToFirstFile(); more; more = zip.goToNextFile()) {
        QuaZipFileInfo64 info;
        if (!zip.getCurrentFileInfo(&info))
            throw UserError("cannot read the entry list of '" + path.string() + "'",
                            "the archive is corrupt: download it again");
        entries.push_back(entry_from(info));
    }
    if (zip.getZipError() != UNZ_OK)
        throw UserError("cannot read the entry list of '" + path.string() + "'",
                        "the archive is corrupt: download it again");
    return entries;
}

std::uint32_t file_crc32(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw UserError("cannot open '" + path.string() + "'");
    std::vector<char> buf(1 << 20);
    uLong crc = crc32(0L, Z_NULL, 0);
    while (in) {
        in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
        const auto n = in.gcount();
        if (n > 0) crc = crc32(crc, reinterpret_cast<const Bytef*>(buf.data()), static_cast<uInt>(n));
    }
    return static_cast<std::uint32_t>(crc);
}

ExtractResult extract_archive(const fs::path& path, const fs::path& dest,
                              const ExtractOptions& options) {
    const auto entries = list_archive(path);

    // Refuse the whole archive when any selected entry could escape `dest`.
    std::vector<std::string> unsafe;
    std::uint64_t total_bytes = 0;
    for (const auto& e : entries) {
        if (options.filter && !options.filter(e)) continue;
        if (e.is_symlink || !is_safe_entry_name(e.name)) unsafe.push_back(e.name);
        if (!e.is_directory) total_bytes += e.size;
    }
    if (!unsafe.empty()) {
        std::string list;
        for (const auto& n : unsafe) list += "\n  " + n;
        throw UserError("refusing to extract '" + path.string() +
                            "': these entries would be written outside the target folder "
                            "or are links:" + list,
                        "the archive is unsafe; get it again from a source you trust");
    }

    std::error_code ec;
    fs::create_directories(dest, ec);
    if (ec) throw UserError("cannot create folder '" + dest.string() + "': " + ec.message());
    ExtractResult result;
    if (entries.empty()) return result;

    QuaZip zip(qpath(path));
    open_for_reading(zip, path);
    std::uint64_t done_bytes = 0;
    std::vector<char> buffer(1 << 20);
    std::size_t index = 0;
    for (bool more = zip.goToFirstFile(); more; more = zip.goToNextFile(), ++index) {
        const ArchiveEntry& e = entries.at(index);
        if (options.filter && !options.filter(e)) continue;
        if (options.cancel && options.cancel->load()) throw Cancelled();
        const fs::path target = dest / fs::path(e.name);
        if (e.is_directory) {
            fs::create_directories(target, ec);
            continue;
        }
        fs::create_directories(target.parent_path(), ec);
        if (ec) throw UserError("cannot create folder '" + target.parent_path().string() + "': " + ec.message());

        // Skip a file that is already complete (same size and checksum).
        std::error_code size_ec;
        if (fs::is_regular_file(target, size_ec) && fs::file_size(target, size_ec) == e.size &&
            file_crc32(target) == e.crc32) {
            result.files.push_back(target);
            ++result.already_intact;
            done_bytes += e.size;
            if (options.progress) options.progress({"extracting " + path.filename().string(), done_bytes, total_bytes});
            continue;
        }

        QuaZipFile in(&zip);
        if (!in.open(QIODevice::ReadOnly))
            throw UserError("cannot read entry '" + e.name + "' of '" + path.string() + "'",
                            "the archive is corrupt: download it again");
        const fs::path part = target.string() + ".part";
        std::FILE* out = std::fopen(part.c_str(), "wb");
        if (!out) throw UserError("cannot create '" + part.string() + "': " + std::strerror(errno));
        uLong crc = crc32(0L, Z_NULL, 0);
        std::uint64_t written = 0;
        auto fail = [&](const std::string& what, const std::string& hint) {
            std::fclose(out);
            fs::remove(part, ec);
            throw UserError(what, hint);
        };
        for (;;) {
            if (options.cancel && options.cancel->load()) {
                std::fclose(out);
                fs::remove(part, ec);
                throw Cancelled();
            }
            const qint64 n = in.read(buffer.data(), static_cast<qint64>(buffer.size()));
            if (n < 0) fail("corrupt data in entry '" + e.name + "' of '" + path.string() + "'",
                            "download the archive again");
            if (n == 0) break;
            if (std::fwrite(buffer.data(), 1, static_cast<size_t>(n), out) != static_cast<size_t>(n)) {
                const bool full = errno == ENOSPC;
                fail("cannot write '" + part.string() + "': " + std::strerror(errno),
                     full ? "the disk is full: free some space and run again (finished files are kept)"
                          : "");
            }
            crc = crc32(crc, reinterpret_cast<const Bytef*>(buffer.data()), static_cast<uInt>(n));
            written += static_cast<std::uint64_t>(n);
            done_bytes += static_cast<std::uint64_t>(n);
            if (options.progress) options.progress({"extracting " + path.filename().string(), done_bytes, total_bytes});
        }
        in.close();
        if (std::fflush(out) != 0 || std::fclose(out) != 0) {
            fs::remove(part, ec);
            throw UserError("cannot write '" + part.string() + "': " + std::strerror(errno),
                            errno == ENOSPC ? "the disk is full: free some space and run again" : "");
        }
        if (written != e.size || static_cast<std::uint32_t>(crc) != e.crc32 || in.getZipError() != UNZ_OK) {
            fs::remove(part, ec);
            throw UserError("entry '" + e.name + "' of '" + path.string() + "' is corrupt (size or CRC-32 mismatch)",
                            "download the archive again");
        }
        fs::rename(part, target, ec);
        if (ec) throw UserError("cannot rename '" + part.string() + "': " + ec.message());
        result.files.push_back(target);
        ++result.written;
    }
    return result;
}

struct ZipWriter::Impl {
    fs::path target;
    fs::path temp;
    QuaZip zip;
    bool committed = false;
    Impl(fs::path t, fs::path tmp) : target(std::move(t)), temp(std::move(tmp)), zip(qpath(temp)) {}
};

ZipWriter::ZipWriter(fs::path target) {
    std::error_code ec;
    if (target.has_parent_path()) fs::create_directories(target.parent_path(), ec);
    fs::path temp = target.string() + ".tmp";
    impl_ = new Impl(std::move(target), std::move(temp));
    if (!impl_->zip.open(QuaZip::mdCreate)) {
        const std::string t = impl_->temp.string();
        delete impl_;
        throw UserError("cannot create zip archive '" + t + "'");
    }
}

ZipWriter::~ZipWriter() {
    if (!impl_->committed) {
        impl_->zip.close();
        std::error_code ec;
        fs::remove(impl_->temp, ec);
    }
    delete impl_;
}

void ZipWriter::add(const std::string& name, const std::string& bytes, bool compress) {
    QuaZipNewInfo info(QString::fromStdString(name));
    info.dateTime = QDateTime(QDate(2017, 1, 1), QTime(0, 0), Qt::UTC);
    info.externalAttr = (0100644u << 16);
    QuaZipFile out(&impl_->zip);
    if (!out.open(QIODevice::WriteOnly, info, nullptr, 0, compress ? Z_DEFLATED : 0,
                  compress ? Z_DEFAULT_COMPRESSION : 0))
        throw UserError("cannot add '" + name + "' to '" + impl_->target.string() + "'");
    if (out.write(bytes.data(), static_cast<qint64>(bytes.size())) != static_cast<qint64>(bytes.size()))
        throw UserError("cannot write '" + name + "' into '" + impl_->target.string() + "'",
                        "check free disk space");
    out.close();
    if (out.getZipError() != ZIP_OK)
        throw UserError("cannot write '" + name + "' into '" + impl_->target.string() + "'");
}

void ZipWriter::commit() {
    impl_->zip.close();
    if (impl_->zip.getZipError() != ZIP_OK)
        throw UserError("cannot finish zip archive '" + impl_->target.string() + "'");
    std::error_code ec;
    fs::rename(impl_->temp, impl_->target, ec);
    if (ec) throw UserError("cannot rename '" + impl_->temp.string() + "': " + ec.message());
    impl_->committed = true;
}

}  // namespace whisker
