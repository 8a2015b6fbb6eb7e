#include "test_support.h"

#include "whisker/common/archive.h"
#include "whisker/common/errors.h"
#include "whisker/common/files.h"

#include <gtest/gtest.h>

#include <quazip.h>
#include <quazipfile.h>
#include <quazipnewinfo.h>

namespace fs = std::filesystem;
using namespace whisker;

namespace {
// Writes a zip with arbitrary (possibly malicious) entry names and attributes, bypassing
// ZipWriter's checks, the way a hostile archive would be made.
void raw_zip(const fs::path& path, const std::vector<std::tuple<std::string, std::string, std::uint32_t>>& entries) {
    QuaZip zip(QString::fromStdString(path.string()));
    ASSERT_TRUE(zip.open(QuaZip::mdCreate));
    for (const auto& [name, data, mode] : entries) {
        QuaZipNewInfo info(QString::fromStdString(name));
        info.externalAttr = mode << 16;
        QuaZipFile f(&zip);
        ASSERT_TRUE(f.open(QIODevice::WriteOnly, info));
        f.write(data.data(), static_cast<qint64>(data.size()));
        f.close();
    }
    zip.close();
}
}  // namespace

TEST(Archive, WriteListExtract) {
    test::TempDir dir;
    {
        ZipWriter w(dir / "a.zip");
        w.add("train/cat.1.jpg", "CAT");
        w.add("train/dog.1.jpg", std::string(100000, 'd'), true);
        w.commit();
    }
    const auto entries = list_archive(dir / "a.zip");
    ASSERT_EQ(entries.size(), 2u);
    EXPECT_EQ(entries[0].name, "train/cat.1.jpg");
    EXPECT_EQ(entries[1].size, 100000u);
    const auto r = extract_archive(dir / "a.zip", dir / "out");
    EXPECT_EQ(r.written, 2u);
    EXPECT_EQ(read_file(dir / "out/train/cat.1.jpg"), "CAT");
    EXPECT_EQ(read_file(dir / "out/train/dog.1.jpg"), std::string(100000, 'd'));
    // Re-running skips what is intact, and repairs what is not.
    write_file_atomically(dir / "out/train/cat.1.jpg", "XYZ");  // same size, wrong content
    const auto again = extract_archive(dir / "a.zip", dir / "out");
    EXPECT_EQ(again.already_intact, 1u);
    EXPECT_EQ(again.written, 1u);
    EXPECT_EQ(read_file(dir / "out/train/cat.1.jpg"), "CAT");
}

TEST(Archive, SameContentSameBytes) {
    test::TempDir dir;
    for (const char* name : {"x.zip", "y.zip"}) {
        ZipWriter w(dir / name);
        w.add("a.txt", "hello");
        w.commit();
    }
    EXPECT_EQ(read_file(dir / "x.zip"), read_file(dir / "y.zip"));
}

TEST(Archive, ZipSlipIsRefusedAndNothingIsWritten) {
    test::TempDir dir;
    raw_zip(dir / "evil.zip", {{"good.txt", "fine", 0100644},
                               {"../escape.txt", "bad", 0100644},
                               {"/etc/whisker-abs.txt", "bad", 0100644},
                               {"sub/../../up.txt", "bad", 0100644}});
    try {
        extract_archive(dir / "evil.zip", dir / "out");
        FAIL() << "extraction should have been refused";
    } catch (const UserError& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find("../escape.txt"), std::string::npos) << msg;
        EXPECT_NE(msg.find("/etc/whisker-abs.txt"), std::string::npos) << msg;
        EXPECT_NE(msg.find("sub/../../up.txt"), std::string::npos) << msg;
        EXPECT_EQ(msg.find("good.txt"), std::string::npos) << msg;
    }
    EXPECT_FALSE(fs::exists(dir / "escape.txt"));
    EXPECT_FALSE(fs::exists(dir / "out/good.txt"));
}

TEST(Archive, SymlinkEntriesAreRefused) {
    test::TempDir dir;
    raw_zip(dir / "link.zip", {{"innocent", "/etc/passwd", 0120777}});
    EXPECT_THROW(extract_archive(dir / "link.zip", dir / "out"), UserError);
    EXPECT_FALSE(fs::exists(dir / "out/innocent"));
}

TEST(Archive, SafeNames) {
    EXPECT_TRUE(is_safe_entry_name("train/cat.1.jpg"));
    EXPECT_TRUE(is_safe_entry_name("a..b/c"));
    EXPECT_FALSE(is_safe_entry_name(""));
    EXPECT_FALSE(is_safe_entry_name("../x"));
    EXPECT_FALSE(is_safe_entry_name("a/../../x"));
    EXPECT_FALSE(is_safe_entry_name("/abs"));
    EXPECT_FALSE(is_safe_entry_name("C:/windows"));
    EXPECT_FALSE(is_safe_entry_name("a\\..\\b"));
}

TEST(Archive, CorruptAndMissingArchivesAreClearErrors) {
    test::TempDir dir;
    EXPECT_THROW(list_archive(dir / "missing.zip"), UserError);
    write_file_atomically(dir / "junk.zip", "this is not a zip file at all");
    EXPECT_THROW(extract_archive(dir / "junk.zip", dir / "out"), UserError);
    // A real archive with its data damaged: the CRC check catches it, no file is left.
    {
        ZipWriter w(dir / "ok.zip");
        w.add("data.bin", std::string(5000, 'x'));
        w.commit();
    }
    std::string bytes = read_file(dir / "ok.zip");
    const auto at = bytes.find(std::string(100, 'x'));
    ASSERT_NE(at, std::string::npos);
    bytes[at + 50] = 'y';
    write_file_atomically(dir / "damaged.zip", bytes);
    EXPECT_THROW(extract_archive(dir / "damaged.zip", dir / "out2"), UserError);
    EXPECT_FALSE(fs::exists(dir / "out2/data.bin"));
    EXPECT_FALSE(fs::exists(dir / "out2/data.bin.part"));
}

TEST(Archive, CancelStopsExtraction) {
    test::TempDir dir;
    {
        ZipWriter w(dir / "a.zip");
        w.add("a", "1");
        w.commit();
    }
    std::atomic<bool> cancel{true};
    ExtractOptions o;
    o.cancel = &cancel;
    EXPECT_THROW(extract_archive(dir / "a.zip", dir / "out", o), Cancelled);
}

TEST(Archive, AFullDiskIsAnErrorNotAHalfFile) {
    test::TempDir dir;
    {
        ZipWriter w(dir / "a.zip");
        w.add("big.bin", std::string(200000, 'b'));
        w.commit();
    }
    // The partial file is a link to /dev/full: every write fails with ENOSPC.
    fs::create_directories(dir / "out");
    fs::create_symlink("/dev/full", dir / "out/big.bin.part");
    try {
        extract_archive(dir / "a.zip", dir / "out");
        FAIL() << "extraction onto a full disk succeeded";
    } catch (const UserError& e) {
        EXPECT_NE(e.hint().find("disk is full"), std::string::npos) << e.what() << " / " << e.hint();
    }
    EXPECT_FALSE(fs::exists(dir / "out/big.bin"));
}
