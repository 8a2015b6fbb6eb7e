#include "test_support.h"

#include "whisker/common/errors.h"
#include "whisker/common/allocator.h"
#include "whisker/common/files.h"

#include <gtest/gtest.h>

namespace fs = std::filesystem;
using namespace whisker;

TEST(AtomicFile, WritesAndReplaces) {
    test::TempDir dir;
    const fs::path f = dir / "sub/out.txt";
    write_file_atomically(f, "first");
    EXPECT_EQ(read_file(f), "first");
    write_file_atomically(f, "second, longer");
    EXPECT_EQ(read_file(f), "second, longer");
    // No temporary files are left behind.
    int entries = 0;
    for ([[maybe_unused]] const auto& e : fs::directory_iterator(f.parent_path())) ++entries;
    EXPECT_EQ(entries, 1);
}

TEST(AtomicFile, UncommittedWriteLeavesOldFileUntouched) {
    test::TempDir dir;
    const fs::path f = dir / "keep.txt";
    write_file_atomically(f, "good");
    {
        AtomicFile w(f);
        w.write("half-writ");
        // destroyed without commit(), as when an exception unwinds
    }
    EXPECT_EQ(read_file(f), "good");
    int entries = 0;
    for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir.path())) ++entries;
    EXPECT_EQ(entries, 1);
}

TEST(AtomicFile, UnwritableFolderIsAUserError) {
    EXPECT_THROW(write_file_atomically("/proc/whisker-cannot-write-here/x", "x"), UserError);
}

TEST(Files, ReadMissingFileNamesIt) {
    try {
        read_file("/nonexistent/whisker.txt");
        FAIL();
    } catch (const UserError& e) {
        EXPECT_NE(std::string(e.what()).find("/nonexistent/whisker.txt"), std::string::npos);
    }
}

TEST(Files, RelativeOrAbsolute) {
    test::TempDir dir;
    fs::create_directories(dir / "data/train");
    EXPECT_EQ(relative_or_absolute(dir / "data/train/a.jpg", dir.path()), "data/train/a.jpg");
    EXPECT_EQ(relative_or_absolute("/usr/share/x.jpg", dir.path()), "/usr/share/x.jpg");
    EXPECT_EQ(resolve_path("data/train/a.jpg", dir.path()), dir / "data/train/a.jpg");
    EXPECT_EQ(resolve_path("/abs/b.jpg", dir.path()), fs::path("/abs/b.jpg"));
}

TEST(Files, StatDetectsChanges) {
    test::TempDir dir;
    write_file_atomically(dir / "a", "123");
    FileStamp s1, s2;
    ASSERT_TRUE(stat_file(dir / "a", s1));
    EXPECT_EQ(s1.size, 3u);
    fs::last_write_time(dir / "a", fs::last_write_time(dir / "a") + std::chrono::seconds(5));
    ASSERT_TRUE(stat_file(dir / "a", s2));
    EXPECT_NE(s1, s2);
    EXPECT_FALSE(stat_file(dir / "missing", s2));
}

// The allocator settings apply under glibc, and step aside for a user's own malloc tunables.
TEST(Allocator, KeepsTensorMemoryUnlessTheUserTunedMalloc) {
#if defined(__GLIBC__)
    {
        whisker::test::ScopedEnv none("GLIBC_TUNABLES", "");
        EXPECT_TRUE(whisker::keep_tensor_memory_for_reuse());
    }
    whisker::test::ScopedEnv user("GLIBC_TUNABLES", "glibc.malloc.arena_max=2");
    EXPECT_FALSE(whisker::keep_tensor_memory_for_reuse());
#else
    GTEST_SKIP() << "not glibc";
#endif
}
