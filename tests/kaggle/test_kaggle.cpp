#include "test_support.h"

#include "whisker/common/errors.h"
#include "whisker/common/files.h"
#include "whisker/kaggle/client.h"
#include "whisker/kaggle/credentials.h"
#include "whisker/kaggle/submission_check.h"
#include "whisker/kaggle/submission_history.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <cstdlib>
#include <optional>
#include <sys/stat.h>

namespace fs = std::filesystem;
using namespace whisker;
using namespace whisker::kaggle;

namespace {

// A clean environment for credential lookups rooted in a temporary HOME.
struct CredentialEnv {
    test::TempDir home;
    test::ScopedEnv h{"HOME", home.path().string()}, cfg{"KAGGLE_CONFIG_DIR", ""}, xdg{"XDG_CONFIG_HOME", ""},
        user{"KAGGLE_USERNAME", ""}, key{"KAGGLE_KEY", ""}, token{"KAGGLE_API_TOKEN", ""};
};
}  // namespace

TEST(Credentials, ConfigFolderFollowsTheOfficialCli) {
    CredentialEnv env;
    EXPECT_EQ(config_dir(), env.home / ".config/kaggle");  // ~/.kaggle does not exist
    {
        test::ScopedEnv xdg("XDG_CONFIG_HOME", "/xdg");
        EXPECT_EQ(config_dir(), fs::path("/xdg/kaggle"));
    }
    fs::create_directories(env.home / ".kaggle");
    EXPECT_EQ(config_dir(), env.home / ".kaggle");
    test::ScopedEnv explicit_dir("KAGGLE_CONFIG_DIR", "/etc/kaggle-conf");
    EXPECT_EQ(config_dir(), fs::path("/etc/kaggle-conf"));
}

TEST(Credentials, OrderTokenThenEnvironmentThenFile) {
    CredentialEnv env;
    EXPECT_FALSE(find_credentials());
    try {
        require_credentials();
        FAIL();
    } catch (const UserError& e) {
        EXPECT_NE(e.hint().find("kaggle.json"), std::string::npos);
    }
    const fs::path file = write_kaggle_json("alice", "filekey");
    struct stat st {};
    ASSERT_EQ(::stat(file.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    auto c = find_credentials();
    ASSERT_TRUE(c);
    EXPECT_EQ(c->username, "alice");
    EXPECT_EQ(c->authorization_header(), "Authorization: Basic YWxpY2U6ZmlsZWtleQ==");
    EXPECT_TRUE(c->warnings.empty());
    EXPECT_EQ(c->describe().find("filekey"), std::string::npos);

    test::ScopedEnv u("KAGGLE_USERNAME", "bob"), k("KAGGLE_KEY", "envkey");
    EXPECT_EQ(find_credentials()->username, "bob");

    write_file_atomically(config_dir() / "access_token", "tok-from-file\n");
    c = find_credentials();
    EXPECT_TRUE(c->is_token);
    EXPECT_EQ(c->authorization_header(), "Authorization: Bearer tok-from-file");

    test::ScopedEnv t("KAGGLE_API_TOKEN", "tok-from-env");
    EXPECT_EQ(find_credentials()->secret, "tok-from-env");
    EXPECT_EQ(find_credentials()->describe().find("tok-from-env"), std::string::npos);
}

TEST(Credentials, LoosePermissionsAreWarnedAbout) {
    CredentialEnv env;
    const fs::path file = write_kaggle_json("alice", "k");
    ::chmod(file.c_str(), 0644);
    const auto c = find_credentials();
    ASSERT_EQ(c->warnings.size(), 1u);
    EXPECT_NE(c->warnings[0].find("chmod 600 " + file.string()), std::string::npos);
}

TEST(Credentials, BrokenKaggleJsonIsAClearError) {
    CredentialEnv env;
    write_file_atomically(config_dir() / "kaggle.json", "{\"user\": 1}");
    EXPECT_THROW(find_credentials(), UserError);
}

TEST(SubmissionCheck, AcceptsAGoodFileCsvOrGzip) {
    test::TempDir dir;
    write_file_atomically(dir / "sample.csv", "id,label\n1,0.5\n2,0.5\n3,0.5\n");
    write_file_atomically(dir / "sub.csv", "id,label\n3,0.1\n1,0.99\n2,1e-3\n");
    auto c = check_submission(dir / "sub.csv", dir / "sample.csv");
    EXPECT_TRUE(c.ok()) << c.summary();
    EXPECT_EQ(c.rows, 3u);
    // The same as gzip.
    gzFile gz = gzopen((dir / "sub.csv.gz").c_str(), "wb");
    const std::string text = read_file(dir / "sub.csv");
    gzwrite(gz, text.data(), static_cast<unsigned>(text.size()));
    gzclose(gz);
    EXPECT_TRUE(check_submission(dir / "sub.csv.gz", dir / "sample.csv").ok());
}

TEST(SubmissionCheck, PreciseProblems) {
    test::TempDir dir;
    write_file_atomically(dir / "sample.csv", "id,label\n1,0.5\n2,0.5\n3,0.5\n4,0.5\n");
    write_file_atomically(dir / "header.csv", "id,prob\n1,0.5\n");
    auto c = check_submission(dir / "header.csv", dir / "sample.csv");
    ASSERT_FALSE(c.ok());
    EXPECT_NE(c.summary().find("the header is 'id,prob', the competition expects 'id,label'"), std::string::npos);

    write_file_atomically(dir / "bad.csv", "id,label\n1,0.5\n1,0.7\n2,abc\n9,0.5\n3,1.2,extra\n");
    c = check_submission(dir / "bad.csv", dir / "sample.csv");
    const std::string s = c.summary();
    EXPECT_NE(s.find("1 ids appear more than once: '1' (lines 2 and 3)"), std::string::npos) << s;
    EXPECT_NE(s.find("2 ids of the sample submission are missing: '3', '4'"), std::string::npos) << s;
    EXPECT_NE(s.find("1 ids are not in the sample submission: '9' (line 5)"), std::string::npos) << s;
    EXPECT_NE(s.find("1 values are not numbers: line 4: 'abc'"), std::string::npos) << s;
    EXPECT_NE(s.find("1 rows with the wrong number of fields: line 6 (3 fields)"), std::string::npos) << s;

    write_file_atomically(dir / "range.csv", "id,label\n1,-0.1\n2,0.5\n3,1.0000001\n4,1\n");
    EXPECT_NE(check_submission(dir / "range.csv", dir / "sample.csv").summary().find("2 values are outside [0, 1]"),
              std::string::npos);
}

TEST(SubmissionCheck, ClassNameColumnsAreNotCheckedAsNumbers) {
    test::TempDir dir;
    write_file_atomically(dir / "sample.csv", "id,breed\na,husky\nb,husky\n");
    write_file_atomically(dir / "sub.csv", "id,breed\na,poodle\nb,beagle\n");
    EXPECT_TRUE(check_submission(dir / "sub.csv", dir / "sample.csv").ok());
}

TEST(SubmissionHistory, RoundTripUpsertAndMergeWithKaggle) {
    test::TempDir dir;
    EXPECT_TRUE(SubmissionHistory::load(dir.path()).submissions.empty());
    SubmissionHistory h;
    h.competition = "dogs-vs-cats";
    SubmissionRecord a;
    a.date = "2026-11-27 09:00:00";
    a.file = "submissions/a.csv";
    a.message = "first";
    a.checkpoint = "submission-a";
    a.status = "PENDING";
    h.upsert(a);
    SubmissionRecord b = a;                  // sent again without a ref yet: matched by date + file
    b.status = "UPLOAD FAILED";
    h.upsert(b);
    ASSERT_EQ(h.submissions.size(), 1u);
    EXPECT_EQ(h.submissions[0].status, "UPLOAD FAILED");
    h.submissions[0].status = "PENDING";
    h.save(dir.path());
    SubmissionHistory loaded = SubmissionHistory::load(dir.path());
    EXPECT_EQ(loaded.competition, "dogs-vs-cats");
    ASSERT_EQ(loaded.submissions.size(), 1u);
    EXPECT_EQ(loaded.submissions[0].checkpoint, "submission-a");
    // Kaggle's list: ours (matched by message + file name, scored since) and one made elsewhere.
    Submission ours;
    ours.ref = "123";
    ours.description = "first";
    ours.file_name = "a.csv";
    ours.status = "COMPLETE";
    ours.public_score = "0.06123";
    Submission theirs;
    theirs.ref = "99";
    theirs.description = "from a notebook";
    theirs.file_name = "nb.csv";
    theirs.status = "COMPLETE";
    theirs.public_score = "0.07";
    loaded.merge({ours, theirs});
    ASSERT_EQ(loaded.submissions.size(), 2u);
    EXPECT_EQ(loaded.submissions[0].ref, "123");
    EXPECT_EQ(loaded.submissions[0].public_score, "0.06123");
    EXPECT_EQ(loaded.submissions[0].checkpoint, "submission-a");
    EXPECT_EQ(loaded.submissions[1].message, "from a notebook");
    EXPECT_TRUE(loaded.submissions[1].checkpoint.empty());
    loaded.merge({ours, theirs});            // idempotent
    EXPECT_EQ(loaded.submissions.size(), 2u);
    write_file_atomically(dir / SubmissionHistory::kFileName, "{broken");
    EXPECT_THROW(SubmissionHistory::load(dir.path()), UserError);
}

TEST(KaggleClient, PercentEncodingAndEndpoint) {
    EXPECT_EQ(percent_encode("a b/c"), "a%20b%2Fc");
    test::ScopedEnv e("KAGGLE_API_ENDPOINT", "http://127.0.0.1:8080");
    EXPECT_EQ(Client::default_endpoint(), "http://127.0.0.1:8080");
    Credentials creds;
    creds.username = "u";
    creds.secret = "k";
    Client c(creds, {});
    EXPECT_EQ(c.endpoint(), "http://127.0.0.1:8080");
}

TEST(KaggleClient, UnreachableServerIsAClearErrorWithoutTheKey) {
    ClientOptions o;
    o.endpoint = "http://127.0.0.1:9";
    o.max_attempts = 2;
    o.first_backoff_seconds = 0.01;
    Credentials creds;
    creds.username = "alice";
    creds.secret = "super-secret";
    Client c(creds, o);
    try {
        c.list_files("x");
        FAIL();
    } catch (const UserError& e) {
        EXPECT_NE(std::string(e.what()).find("did not answer"), std::string::npos);
        EXPECT_EQ(std::string(e.what()).find("super-secret"), std::string::npos);
    }
}
