// Pretrained weights: the torch hub cache and downloads against a server on 127.0.0.1.
#include "test_support.h"

#include "whisker/common/errors.h"
#include "whisker/common/files.h"
#include "whisker/common/hash.h"
#include "whisker/common/http.h"
#include "whisker/models/weights.h"
#include "whisker/models/zoo.h"

#include <ATen/ATen.h>

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>

namespace fs = std::filesystem;
using namespace whisker;
using namespace whisker::models;

namespace {


std::string random_bytes(std::size_t n, unsigned seed) {
    std::string s(n, '\0');
    std::uint32_t x = seed * 2654435761u + 1;
    for (auto& c : s) {
        x = x * 1664525u + 1013904223u;
        c = static_cast<char>(x >> 24);
    }
    return s;
}

class Downloads : public ::testing::Test {
protected:
    void SetUp() override {
        root_ = std::make_unique<test::TempDir>();
        fs::create_directories(*root_ / "files");
        payload_ = random_bytes(3 * 1024 * 1024 + 17, 3);
        write_file_atomically(*root_ / "files/weights.pth", payload_);
        server_ = std::make_unique<test::BackgroundServer>(std::vector<std::string>{
            "/usr/bin/python3", (test::tests_dir() / "support/http_test_server.py").string(), "--root",
            (*root_ / "files").string(), "--log", (*root_ / "requests.log").string()});
        options_.first_backoff_seconds = 0.05;
        options_.max_attempts = 4;
    }
    std::string url(const std::string& mode) const { return server_->url() + "/" + mode + "/weights.pth"; }
    std::string log() const { return fs::exists(*root_ / "requests.log") ? read_file(*root_ / "requests.log") : ""; }
    fs::path dest() const { return *root_ / "cache/weights.pth"; }
    std::string prefix() const { return sha256_hex(payload_).substr(0, 8); }

    std::unique_ptr<test::TempDir> root_;
    std::unique_ptr<test::BackgroundServer> server_;
    std::string payload_;
    DownloadOptions options_;
};

}  // namespace

TEST(WeightsCache, TorchHubLocations) {
    {
        test::ScopedEnv th("TORCH_HOME", "/opt/torch");
        EXPECT_EQ(torch_hub_checkpoints_dir(), fs::path("/opt/torch/hub/checkpoints"));
    }
    {
        test::ScopedEnv th("TORCH_HOME", "");
        test::ScopedEnv xdg("XDG_CACHE_HOME", "/var/cache/me");
        EXPECT_EQ(torch_hub_checkpoints_dir(), fs::path("/var/cache/me/torch/hub/checkpoints"));
    }
    {
        test::ScopedEnv th("TORCH_HOME", "");
        test::ScopedEnv xdg("XDG_CACHE_HOME", "");
        test::ScopedEnv home("HOME", "/home/user");
        EXPECT_EQ(torch_hub_checkpoints_dir(), fs::path("/home/user/.cache/torch/hub/checkpoints"));
        EXPECT_EQ(cached_weights_path(Arch::ResNet34), fs::path("/home/user/.cache/torch/hub/checkpoints/resnet34-b627a593.pth"));
    }
    {
        test::ScopedEnv base("WHISKER_WEIGHTS_URL", "");
        EXPECT_EQ(weights_url(Arch::ResNet34), "https://download.pytorch.org/models/resnet34-b627a593.pth");
    }
    test::ScopedEnv base("WHISKER_WEIGHTS_URL", "http://127.0.0.1:9/mirror/");
    EXPECT_EQ(weights_url(Arch::VGG16_BN), "http://127.0.0.1:9/mirror/vgg16_bn-6c64b313.pth");
}

TEST(WeightsCache, AFileAlreadyInTheCacheIsUsedWithoutNetwork) {
    test::TempDir dir;
    test::ScopedEnv th("TORCH_HOME", dir.path().string());
    test::ScopedEnv base("WHISKER_WEIGHTS_URL", "http://127.0.0.1:9");  // nothing listens there
    EXPECT_EQ(weights_state(Arch::ResNet18), WeightsState::NotDownloaded);
    write_file_atomically(cached_weights_path(Arch::ResNet18), "cached");
    EXPECT_EQ(weights_state(Arch::ResNet18), WeightsState::Cached);
    EXPECT_EQ(ensure_pretrained_weights(Arch::ResNet18), cached_weights_path(Arch::ResNet18));
}

TEST(WeightsCache, OfflineErrorSaysWhichFileAndWhereToPutIt) {
    test::TempDir dir;
    test::ScopedEnv th("TORCH_HOME", dir.path().string());
    test::ScopedEnv base("WHISKER_WEIGHTS_URL", "http://127.0.0.1:9");
    DownloadOptions o;
    o.max_attempts = 2;
    o.first_backoff_seconds = 0.01;
    o.connect_timeout_seconds = 2;
    try {
        ensure_pretrained_weights(Arch::ResNet34, o);
        FAIL();
    } catch (const UserError& e) {
        EXPECT_NE(std::string(e.what()).find("resnet34"), std::string::npos) << e.what();
        EXPECT_NE(e.hint().find("resnet34-b627a593.pth"), std::string::npos) << e.hint();
        EXPECT_NE(e.hint().find((dir / "hub/checkpoints").string()), std::string::npos) << e.hint();
    }
    EXPECT_FALSE(fs::exists(cached_weights_path(Arch::ResNet34)));
}

TEST_F(Downloads, Success) {
    std::atomic<std::uint64_t> last_done{0}, last_total{0};
    options_.progress = [&](const Progress& p) {
        last_done = p.done;
        last_total = p.total;
    };
    fetch_verified(url("ok"), dest(), prefix(), options_);
    EXPECT_EQ(read_file(dest()), payload_);
    EXPECT_EQ(last_done.load(), payload_.size());
    EXPECT_EQ(last_total.load(), payload_.size());
    EXPECT_FALSE(fs::exists(dest().string() + ".download"));
    EXPECT_FALSE(fs::exists(dest().string() + ".download.part"));
}

TEST_F(Downloads, ResumesAfterACutConnection) {
    const DownloadResult r = download_file(url("cut"), dest(), options_);
    EXPECT_EQ(read_file(dest()), payload_);
    EXPECT_GE(r.attempts, 2);
    EXPECT_TRUE(r.resumed);
    // The second request asked only for the missing half.
    EXPECT_NE(log().find("range=bytes=" + std::to_string(payload_.size() / 2) + "-"), std::string::npos) << log();
}

TEST_F(Downloads, ResumesAPartialFileFromAnEarlierRun) {
    write_file_atomically(dest().string() + ".part", payload_.substr(0, 1000));
    const DownloadResult r = download_file(url("ok"), dest(), options_);
    EXPECT_TRUE(r.resumed);
    EXPECT_EQ(read_file(dest()), payload_);
    EXPECT_NE(log().find("range=bytes=1000-"), std::string::npos);
}

TEST_F(Downloads, AServerIgnoringRangeRestartsCleanly) {
    write_file_atomically(dest().string() + ".part", std::string(1000, 'x'));
    download_file(url("norange"), dest(), options_);
    EXPECT_EQ(read_file(dest()), payload_);
}

TEST_F(Downloads, WrongHashIsRejectedAndTheCacheLeftClean) {
    try {
        fetch_verified(url("badhash"), dest(), prefix(), options_);
        FAIL();
    } catch (const UserError& e) {
        EXPECT_NE(std::string(e.what()).find("corrupt"), std::string::npos);
    }
    EXPECT_FALSE(fs::exists(dest()));
    EXPECT_TRUE(fs::is_empty(dest().parent_path()));
}

TEST_F(Downloads, NotFoundFailsAtOnce) {
    try {
        download_file(url("missing"), dest(), options_);
        FAIL();
    } catch (const HttpError& e) {
        EXPECT_EQ(e.status(), 404);
        EXPECT_NE(std::string(e.what()).find("404"), std::string::npos);
    }
    const std::string requests = log();
    EXPECT_EQ(std::count(requests.begin(), requests.end(), '\n'), 1);  // no retries for a 404
    EXPECT_FALSE(fs::exists(dest()));
}

TEST_F(Downloads, ServerErrorThenSuccess) {
    const DownloadResult r = download_file(url("flaky"), dest(), options_);
    EXPECT_EQ(r.attempts, 2);
    EXPECT_EQ(read_file(dest()), payload_);
}

TEST_F(Downloads, TooManyRequestsHonoursRetryAfter) {
    const auto t0 = std::chrono::steady_clock::now();
    download_file(url("slow429"), dest(), options_);
    EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(900));
    EXPECT_EQ(read_file(dest()), payload_);
}

TEST_F(Downloads, RedirectsAreFollowed) {
    download_file(url("redirect"), dest(), options_);
    EXPECT_EQ(read_file(dest()), payload_);
}

TEST_F(Downloads, CancelKeepsThePartialFileForLater) {
    std::atomic<bool> cancel{false};
    options_.cancel = &cancel;
    options_.progress = [&](const Progress& p) {
        if (p.done > 0) cancel = true;
    };
    EXPECT_THROW(download_file(url("ok"), dest(), options_), Cancelled);
    EXPECT_FALSE(fs::exists(dest()));
}

TEST_F(Downloads, EnsurePretrainedWeightsDeletesAMismatchedDownload) {
    // The served file cannot carry resnet18's real hash, so the download must be refused.
    write_file_atomically(*root_ / "files/resnet18-f37072fd.pth", payload_);
    test::ScopedEnv th("TORCH_HOME", (*root_ / "torch").string());
    test::ScopedEnv base("WHISKER_WEIGHTS_URL", server_->url() + "/ok");
    EXPECT_THROW(ensure_pretrained_weights(Arch::ResNet18, options_), UserError);
    EXPECT_FALSE(fs::exists(cached_weights_path(Arch::ResNet18)));
}

// Every architecture asks the server for torchvision's file name, and what it gets must carry
// that name's hash (these served files cannot): refused, the cache left without it.
TEST_F(Downloads, EveryArchitectureFetchesTorchvisionsFileAndChecksItsHash) {
    test::ScopedEnv th("TORCH_HOME", (*root_ / "torch").string());
    test::ScopedEnv base("WHISKER_WEIGHTS_URL", server_->url() + "/ok");
    const std::string small = random_bytes(2048, 5);
    for (const auto& a : all_architectures()) {
        SCOPED_TRACE(a.name);
        write_file_atomically(*root_ / "files" / a.weights_file, small);
        EXPECT_EQ(cached_weights_path(a.arch), *root_ / "torch/hub/checkpoints" / a.weights_file);
        try {
            ensure_pretrained_weights(a.arch, options_);
            ADD_FAILURE() << "a file without the right hash was accepted";
        } catch (const UserError& e) {
            EXPECT_NE(std::string(e.what()).find(a.sha256_prefix()), std::string::npos) << e.what();
        }
        EXPECT_NE(log().find("/ok/" + a.weights_file), std::string::npos);
        EXPECT_FALSE(fs::exists(cached_weights_path(a.arch)));
    }
}

// A torchvision file in the cache under the architecture's name is what a pretrained body
// loads (here mobilenet_v3_small and vit_b_16 with random weights saved by torchvision).
TEST(WeightsCache, ACachedTorchvisionFileLoadsIntoANewFamilysBody) {
    WHISKER_REQUIRE_PYTHON_TORCHVISION();
    test::TempDir dir;
    test::ScopedEnv th("TORCH_HOME", dir.path().string());
    test::ScopedEnv base("WHISKER_WEIGHTS_URL", "http://127.0.0.1:9");
    for (Arch arch : {Arch::MobileNet_V3_Small, Arch::ViT_B_16}) {
        const ArchInfo& a = arch_info(arch);
        const std::string cmd = "/usr/bin/python3 -c \"import torch, torchvision; torch.manual_seed(0); "
                                "torch.save(torchvision.models." + a.name + "().state_dict(), '" +
                                cached_weights_path(arch).string() + "')\"";
        fs::create_directories(cached_weights_path(arch).parent_path());
        ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
        auto body = create_imagenet_model(arch, false);
        load_torchvision_weights(*body, ensure_pretrained_weights(arch));
        const StateDict file = read_torch_checkpoint(cached_weights_path(arch));
        for (const auto& [name, t] : state_dict_of(*body))
            EXPECT_TRUE(at::equal(t, find_tensor(file, name))) << a.name << " " << name;
    }
}
