// whisker-cli bench loader
#include "commands.h"

#include "whisker/data/dataset.h"
#include "whisker/data/loader.h"
#include "whisker/data/resize_cache.h"
#include "whisker/common/errors.h"
#include "whisker/common/parallel.h"

#include <fmt/format.h>

#include <sys/resource.h>

#include <chrono>
#include <optional>

namespace fs = std::filesystem;

namespace whisker::cli {

namespace {

struct LoaderBenchArgs {
    std::string project;
    int size = 224;
    int batch_size = 64;
    int epochs = 2;
    std::string view = "train";
    std::string aug = "side-on";
    bool resize_cache = false;
    bool no_dct = false;
    bool libjpeg_turbo_only = false;
    bool profile = false;
    bool json = false;
};

// CPU seconds (user + system) this process has used so far, all threads.
double process_cpu_seconds() {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    auto secs = [](const timeval& t) { return static_cast<double>(t.tv_sec) + 1e-6 * static_cast<double>(t.tv_usec); };
    return secs(u.ru_utime) + secs(u.ru_stime);
}

// The profile as a table: per image, milliseconds of worker time in each stage, and its share.
void print_profile(const data::LoaderProfile& p) {
    if (p.images == 0 || p.total <= 0) return;
    const double per = 1000.0 / static_cast<double>(p.images);
    double staged = 0;
    fmt::print("\n{:<30} {:>10} {:>7}\n", "stage (worker time)", "ms/image", "share");
    for (const auto& st : p.stages) {
        staged += st.seconds;
        if (st.seconds > 0) fmt::print("{:<30} {:>10.3f} {:>6.1f}%\n", st.name, st.seconds * per, 100.0 * st.seconds / p.total);
    }
    const double other = std::max(0.0, p.total - staged);
    fmt::print("{:<30} {:>10.3f} {:>6.1f}%\n", "other (untimed)", other * per, 100.0 * other / p.total);
    fmt::print("{:<30} {:>10.3f} {:>6.1f}%   ({} images)\n", "total", p.total * per, 100.0, p.images);
}

std::string profile_json(const data::LoaderProfile& p) {
    std::string out = "{";
    for (const auto& st : p.stages) out += fmt::format("\"{}\": {:.6f}, ", st.name, st.seconds);
    return out + fmt::format("\"total\": {:.6f}, \"images\": {}}}", p.total, p.images);
}

void add_loader_bench(CLI::App& bench, GlobalOptions& global) {
    static LoaderBenchArgs a;
    auto* cmd = bench.add_subcommand("loader", "Images per second of the data loader (decode + transform + batch)");
    cmd->add_option("PROJECT", a.project, "Project folder")->required();
    cmd->add_option("--size", a.size, "Image size")->capture_default_str();
    cmd->add_option("--bs", a.batch_size, "Batch size")->capture_default_str();
    cmd->add_option("--epochs", a.epochs, "Epochs to time (after one warm-up batch)")->capture_default_str();
    cmd->add_option("--view", a.view, "train, valid, fix, aug, test or test_aug")->capture_default_str();
    cmd->add_option("--aug", a.aug, "Training augmentation (train, aug and test_aug views): side-on, top-down, basic or none")
        ->capture_default_str();
    cmd->add_flag("--resize-cache", a.resize_cache, "Read images from the pre-shrunk cache (built first if needed)");
    cmd->add_flag("--no-dct-scaling", a.no_dct, "Always decode JPEGs at full resolution");
    cmd->add_flag("--libjpeg-turbo-only", a.libjpeg_turbo_only,
                  "Decode reduced JPEGs with libjpeg-turbo, not Whisker's faster decoder (same pixels): to compare");
    cmd->add_flag("--profile", a.profile,
                  "Also time each stage (read, decode, resize, rotate, lighting, crop+normalise, batch) per image");
    cmd->add_flag("--json", a.json, "Print one JSON object");
    cmd->callback([&global] {
        const auto view = data::parse_view(a.view);
        if (!view) throw UserError("unknown view '" + a.view + "'", "use train, valid, fix, aug, test or test_aug");
        const auto preset = data::parse_augment_preset(a.aug);
        if (!preset) throw UserError("unknown augmentation '" + a.aug + "'", "use side-on, top-down, basic or none");
        const auto d = data::Dataset::load(a.project);
        std::optional<data::ResizeCache> cache;
        data::LoaderOptions lo;
        lo.batch_size = a.batch_size;
        lo.threads = global.threads;
        lo.dct_scaling = !a.no_dct;
        lo.reduced_jpeg_decoder = !a.libjpeg_turbo_only;
        lo.profile = a.profile;
        if (a.resize_cache) {
            cache.emplace(a.project, data::ResizeCache::side_for(a.size));
            std::vector<fs::path> files;
            for (const auto& im : d.images) files.push_back(d.resolve(a.project, im));
            cache->build(files, global.threads);
            lo.resize_cache = &*cache;
        }
        const auto augment = data::AugmentSettings::for_preset(*preset, a.size, data::default_max_zoom(*preset));
        auto loader = data::make_loader(d, a.project, *view, augment, lo);
        if (loader->size() == 0) throw UserError("the " + a.view + " view has no images");
        loader->start_epoch(0);
        (void)loader->next();  // warm-up: threads started, caches touched
        std::size_t images = 0, failures = 0;
        loader->reset_profile();
        const double cpu0 = process_cpu_seconds();
        const auto t0 = std::chrono::steady_clock::now();
        for (int e = 1; e <= a.epochs; ++e) {
            loader->start_epoch(e);
            while (auto b = loader->next()) {
                images += static_cast<std::size_t>(b->images.size(0));
                failures += b->failures.size();
            }
        }
        const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        const double cpu = process_cpu_seconds() - cpu0;
        const double rate = static_cast<double>(images) / secs;
        // Images per CPU-second: what one core delivers, whatever else the machine is running.
        const double per_cpu = cpu > 0 ? static_cast<double>(images) / cpu : 0.0;
        const int threads = global.threads > 0 ? global.threads : default_thread_count();
        if (a.json)
            fmt::print("{{\"images\": {}, \"seconds\": {:.3f}, \"images_per_second\": {:.1f}, \"cpu_seconds\": {:.3f}, "
                       "\"images_per_cpu_second\": {:.1f}, \"threads\": {}, "
                       "\"view\": \"{}\", \"aug\": \"{}\", \"size\": {}, \"resize_cache\": {}, \"dct_scaling\": {}, "
                       "\"reduced_jpeg_decoder\": {}, \"failures\": {}{}}}\n",
                       images, secs, rate, cpu, per_cpu, threads, a.view, a.aug, a.size, a.resize_cache, !a.no_dct,
                       !a.libjpeg_turbo_only, failures,
                       a.profile ? ", \"profile\": " + profile_json(loader->profile()) : std::string());
        else {
            fmt::print("loader ({} view, size {}, {} threads{}{}{}): {} images in {:.2f} s = {:.1f} images/s "
                       "({:.1f} per CPU-second)\n", a.view, a.size, threads, a.resize_cache ? ", resize cache" : "",
                       a.no_dct ? ", no DCT scaling" : "", a.libjpeg_turbo_only ? ", libjpeg-turbo only" : "", images,
                       secs, rate, per_cpu);
            if (a.profile) print_profile(loader->profile());
        }
    });
}

}  // namespace

void add_bench_commands(CLI::App& app, GlobalOptions& global) {
    auto* bench = app.add_subcommand("bench", "Measure the speed of Whisker's parts");
    bench->require_subcommand(1);
    add_loader_bench(*bench, global);
    add_train_bench(*bench, global);
}

}  // namespace whisker::cli
