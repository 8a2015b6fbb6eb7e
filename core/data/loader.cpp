#include "whisker/data/loader.h"

#include "whisker/common/parallel.h"
#include "whisker/common/random.h"
#include "whisker/data/image_decode.h"
#include "whisker/data/resize_cache.h"

#include <ATen/ATen.h>
#include <torch/cuda.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

namespace whisker::data {

const char* view_name(View v) {
    switch (v) {
        case View::Train: return "train";
        case View::Valid: return "valid";
        case View::Fix: return "fix";
        case View::Aug: return "aug";
        case View::Test: return "test";
        case View::TestAug: return "test_aug";
    }
    return "?";
}

std::optional<View> parse_view(const std::string& name) {
    for (View v : {View::Train, View::Valid, View::Fix, View::Aug, View::Test, View::TestAug})
        if (name == view_name(v)) return v;
    return std::nullopt;
}

std::vector<std::size_t> shard_positions(std::size_t n, int rank, int count, bool interleaved) {
    if (count < 1 || rank < 0 || rank >= count) throw std::invalid_argument("shard_positions: bad rank/count");
    const auto c = static_cast<std::size_t>(count), r = static_cast<std::size_t>(rank);
    std::vector<std::size_t> out;
    if (interleaved) {
        if (n == 0) return out;
        const std::size_t total = (n + c - 1) / c * c;
        for (std::size_t p = r; p < total; p += c) out.push_back(p);
    } else {
        const std::size_t base = n / c, extra = n % c;
        const std::size_t begin = r * base + std::min(r, extra);
        const std::size_t len = base + (r < extra ? 1 : 0);
        for (std::size_t p = begin; p < begin + len; ++p) out.push_back(p);
    }
    return out;
}

namespace {

// The profile's stages, in pipeline order.
enum Stage { kRead, kDecode, kResize, kRotate, kLighting, kCropNormalise, kExtra, kBatch, kStageCount };
const char* const kStageNames[kStageCount] = {
    "read file", "decode", "resize (to float, scale)", "rotate (+ lighting mean)", "lighting mean",
    "crop+flip+lighting+normalise", "trivial augment, erasing", "batch (allocate, labels)"};

struct StageSeconds {
    std::array<double, kStageCount> seconds{};
    double total = 0;
    std::size_t images = 0;
    void add(const StageSeconds& o) {
        for (int i = 0; i < kStageCount; ++i) seconds[static_cast<std::size_t>(i)] += o.seconds[static_cast<std::size_t>(i)];
        total += o.total;
        images += o.images;
    }
    void add(const TransformTimes& t) {
        seconds[kResize] += t.resize;
        seconds[kRotate] += t.rotate;
        seconds[kLighting] += t.lighting;
        seconds[kCropNormalise] += t.crop_normalise;
        seconds[kExtra] += t.extra;
    }
};

// Adds the time since the previous lap to a stage when profiling; reads no clock otherwise.
class StageClock {
public:
    explicit StageClock(StageSeconds* into) : into_(into) {
        if (into_) start_ = last_ = std::chrono::steady_clock::now();
    }
    void lap(Stage stage) {
        if (!into_) return;
        const auto now = std::chrono::steady_clock::now();
        into_->seconds[static_cast<std::size_t>(stage)] += std::chrono::duration<double>(now - last_).count();
        last_ = now;
    }
    // Restarts the lap without charging a stage (the time was accounted elsewhere).
    void skip() {
        if (into_) last_ = std::chrono::steady_clock::now();
    }
    void finish() {
        if (into_) into_->total += std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    }

private:
    StageSeconds* into_;
    std::chrono::steady_clock::time_point start_, last_;
};

// Batch buffers handed back when the consumer drops a batch, so the next batch writes into
// memory that is already mapped: a fresh 38 MB batch (64 x 3 x 224 x 224 floats) costs the
// kernel ~9,000 page faults and zeroing. Holds at most `keep` idle buffers.
class BatchBufferPool : public std::enable_shared_from_this<BatchBufferPool> {
public:
    BatchBufferPool(std::size_t floats, std::size_t keep) : floats_(floats), keep_(keep) {}
    ~BatchBufferPool() {
        for (float* p : idle_) std::free(p);
    }
    // An [n, 3, size, size] float tensor (n up to the full batch) on a pooled buffer.
    at::Tensor tensor(std::int64_t n, int size) {
        float* buffer = nullptr;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (!idle_.empty()) {
                buffer = idle_.back();
                idle_.pop_back();
            }
        }
        if (!buffer) {
            const std::size_t bytes = (floats_ * sizeof(float) + 63) / 64 * 64;
            buffer = static_cast<float*>(std::aligned_alloc(64, bytes));
            if (!buffer) throw std::bad_alloc();
        }
        auto self = shared_from_this();
        return at::from_blob(buffer, {n, 3, size, size}, [self](void* p) { self->give_back(static_cast<float*>(p)); },
                             at::TensorOptions().dtype(at::kFloat));
    }

private:
    void give_back(float* p) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (idle_.size() < keep_) idle_.push_back(p);
        else std::free(p);
    }
    std::size_t floats_, keep_;
    std::mutex mutex_;
    std::vector<float*> idle_;
};

}  // namespace

struct DataLoader::Impl {
    std::vector<LoadItem> items;
    bool training;
    bool shuffle;
    AugmentSettings augment;
    LoaderOptions options;
    int num_classes;
    bool multi_label;
    bool pinned = false;

    std::mutex mutex;
    std::condition_variable work_cv;     // workers wait for something to build
    std::condition_variable ready_cv;    // the consumer waits for the next batch
    std::uint64_t generation = 0;        // bumped by start_epoch; stale work is discarded
    bool started = false;
    bool stopping = false;
    int epoch = 0;
    // This rank's share of the epoch: item indices, and their positions in the whole epoch
    // (which seed the augmentation). Replaced per epoch, never mutated.
    struct Plan {
        std::vector<std::size_t> items, positions;
    };
    std::shared_ptr<const Plan> order;
    std::size_t local_size = 0;
    // Work is claimed a few images at a time, in batch order: every worker helps build the
    // oldest unfinished batch, so the first batch of an epoch comes in 1/threads of the time
    // one worker would take, and the epoch's last batches do not leave workers idle (with one
    // batch per worker, an epoch of 3 batches on 2 workers kept one idle a quarter of the time).
    std::size_t next_claim = 0;        // the batch being claimed
    std::size_t next_claim_image = 0;  // its first unclaimed image
    std::size_t chunk_images = 1;      // images per claim
    std::size_t next_deliver = 0;
    // A batch some of whose images are still being built. Workers write disjoint rows of
    // `batch.images` and disjoint slots of `ok`/`failure`; the worker that finishes its last
    // image hands it out. Held by shared_ptr so that a batch of a superseded epoch stays valid
    // until its workers let go.
    struct Building {
        std::uint64_t generation = 0;
        int epoch = 0;
        std::shared_ptr<const Plan> plan;
        std::size_t batch_index = 0, begin = 0, images = 0, unfinished = 0;
        Batch batch;
        std::vector<char> ok;
        std::vector<std::optional<SkippedFile>> failure;
    };
    std::shared_ptr<Building> claiming;  // the batch `next_claim`, once begun
    std::map<std::size_t, Batch> ready;
    std::vector<std::thread> workers;
    StageSeconds profile;                      // under `mutex`
    std::shared_ptr<BatchBufferPool> buffers;  // unpinned batches only

    std::size_t num_batches() const {
        const auto bs = static_cast<std::size_t>(options.batch_size);
        return (local_size + bs - 1) / bs;
    }

    // Under `mutex`: the batch `next_claim`, begun (its tensor allocated) if no one has yet.
    std::shared_ptr<Building> claimable_batch() {
        if (claiming) return claiming;
        auto b = std::make_shared<Building>();
        const auto bs = static_cast<std::size_t>(options.batch_size);
        b->generation = generation;
        b->epoch = epoch;
        b->plan = order;
        b->batch_index = next_claim;
        b->begin = next_claim * bs;
        b->images = std::min(order->items.size(), b->begin + bs) - b->begin;
        b->unfinished = b->images;
        const auto n = static_cast<std::int64_t>(b->images);
        const int sz = augment.size;
        if (buffers) b->batch.images = buffers->tensor(n, sz);
        else b->batch.images = at::empty({n, 3, sz, sz}, at::TensorOptions().dtype(at::kFloat).pinned_memory(pinned));
        b->ok.assign(b->images, 1);
        b->failure.resize(b->images);
        claiming = b;
        return b;
    }

    // Decodes and transforms images [first, last) of a batch into its rows.
    // `times`: where to add the stages' seconds (nullptr: not profiling).
    void build_images(Building& b, std::size_t first, std::size_t last, StageSeconds* times) {
        StageClock clock(times);
        const Plan& plan = *b.plan;
        const int sz = augment.size;
        float* out = b.batch.images.data_ptr<float>();
        const std::size_t per_image = 3ull * static_cast<std::size_t>(sz) * static_cast<std::size_t>(sz);
        DecodeOptions decode;
        decode.min_shorter_side = options.dct_scaling ? (training ? augment.min_decode_side() : augment.eval_side()) : 0;
        decode.allow_fast_jpeg = options.reduced_jpeg_decoder;
        TransformTimes transform_times;
        TransformTimes* step_times = times ? &transform_times : nullptr;
        for (std::size_t k = first; k < last; ++k) {
            const std::size_t position = plan.positions[b.begin + k];
            const LoadItem& item = items[plan.items[b.begin + k]];
            try {
                const std::filesystem::path file =
                    options.resize_cache ? options.resize_cache->lookup(item.path) : item.path;
                const std::string bytes = read_image_file(file);
                clock.lap(kRead);
                const DecodedImage img = decode_image(bytes, decode);
                clock.lap(kDecode);
                float* dst = out + k * per_image;
                if (training) {
                    Rng rng(derive_seed(options.seed, static_cast<std::uint64_t>(b.epoch) + 1, position));
                    const AugmentDraw draw = draw_augmentation(augment, rng);
                    training_transform(img.rgb, augment, draw, dst, step_times);
                } else {
                    validation_transform(img.rgb, augment, dst, step_times);
                }
                clock.skip();
            } catch (const std::exception& e) {
                b.ok[k] = 0;
                b.failure[k] = SkippedFile{item.path.string(), e.what()};
                clock.lap(kDecode);
            }
        }
        if (times) {
            times->add(transform_times);
            times->images += last - first;
        }
        clock.finish();
    }

    // The labels and records of a batch whose images are all built; leaves out the rows of
    // files that failed.
    void finish_batch(Building& b, StageSeconds* times) {
        StageClock clock(times);
        Batch& batch = b.batch;
        const Plan& plan = *b.plan;
        std::vector<std::int64_t> keep;
        for (std::size_t k = 0; k < b.images; ++k) {
            if (b.ok[k]) keep.push_back(static_cast<std::int64_t>(k));
            else batch.failures.push_back(std::move(*b.failure[k]));
        }
        const auto kept = static_cast<std::int64_t>(keep.size());
        if (keep.size() != b.images) {
            auto idx = at::from_blob(keep.data(), {kept}, at::kLong).clone();
            batch.images = batch.images.index_select(0, idx);
            if (pinned) batch.images = batch.images.pin_memory();
        }
        if (multi_label) batch.labels = at::zeros({kept, num_classes}, at::kFloat);
        else batch.labels = at::full({kept}, -1, at::kLong);
        for (std::int64_t r = 0; r < kept; ++r) {
            const LoadItem& item = items[plan.items[b.begin + static_cast<std::size_t>(keep[static_cast<std::size_t>(r)])]];
            batch.records.push_back(item.record);
            if (multi_label) {
                auto acc = batch.labels.accessor<float, 2>();
                for (int l : item.labels) acc[r][l] = 1.0f;
            } else if (!item.labels.empty()) {
                batch.labels.data_ptr<std::int64_t>()[r] = item.labels[0];
            }
        }
        clock.lap(kBatch);
        clock.finish();
    }

    void worker_loop() {
        std::unique_lock<std::mutex> lock(mutex);
        const auto prefetch = static_cast<std::size_t>(options.prefetch_batches);
        for (;;) {
            work_cv.wait(lock, [&] {
                return stopping || (started && next_claim < num_batches() && next_claim < next_deliver + prefetch);
            });
            if (stopping) return;
            StageSeconds times;
            StageSeconds* timing = options.profile ? &times : nullptr;
            std::shared_ptr<Building> b;
            {
                StageClock clock(timing);  // allocating a batch is the batch stage's
                b = claimable_batch();
                clock.lap(kBatch);
                clock.finish();
            }
            const std::size_t first = next_claim_image;
            const std::size_t last = std::min(b->images, first + chunk_images);
            next_claim_image = last;
            if (last == b->images) {
                claiming.reset();
                ++next_claim;
                next_claim_image = 0;
            }
            lock.unlock();
            build_images(*b, first, last, timing);
            lock.lock();
            b->unfinished -= last - first;
            const bool complete = b->unfinished == 0;
            if (complete && b->generation == generation) {
                lock.unlock();
                finish_batch(*b, timing);
                lock.lock();
            }
            if (timing) profile.add(times);
            if (complete && b->generation == generation) {
                ready.emplace(b->batch_index, std::move(b->batch));
                ready_cv.notify_all();
            }
        }
    }
};

DataLoader::DataLoader(std::vector<LoadItem> items, bool training_transform, bool shuffle, AugmentSettings augment,
                       LoaderOptions options, int num_classes, bool multi_label)
    : impl_(std::make_unique<Impl>()) {
    if (options.batch_size <= 0) throw std::invalid_argument("batch size must be positive");
    if (augment.size <= 0) throw std::invalid_argument("image size must be positive");
    if (options.threads <= 0) options.threads = default_thread_count();
    if (options.prefetch_batches <= 0) options.prefetch_batches = 2 * options.threads;
    // A few claims per worker per batch: few enough that the lock is taken rarely (an image
    // takes 0.3-10 ms), enough that workers finish a batch together.
    impl_->chunk_images = static_cast<std::size_t>(
        std::clamp(options.batch_size / (4 * options.threads), 1, 8));
    impl_->items = std::move(items);
    impl_->training = training_transform;
    impl_->shuffle = shuffle;
    impl_->augment = augment;
    impl_->options = options;
    impl_->num_classes = num_classes;
    impl_->multi_label = multi_label;
    if (options.shard_count < 1 || options.shard_rank < 0 || options.shard_rank >= options.shard_count)
        throw std::invalid_argument("loader shard rank/count out of range");
    impl_->local_size = shard_positions(impl_->items.size(), options.shard_rank, options.shard_count, shuffle).size();
    switch (options.pin_memory) {
        case LoaderOptions::Pinning::Always: impl_->pinned = true; break;
        case LoaderOptions::Pinning::Never: impl_->pinned = false; break;
        case LoaderOptions::Pinning::Auto: impl_->pinned = torch::cuda::is_available(); break;
    }
    // Pinned batches come from LibTorch's caching host allocator, which reuses them already.
    if (!impl_->pinned)
        impl_->buffers = std::make_shared<BatchBufferPool>(
            static_cast<std::size_t>(options.batch_size) * 3u * static_cast<std::size_t>(augment.size) *
                static_cast<std::size_t>(augment.size),
            static_cast<std::size_t>(options.prefetch_batches) + 2u);
    for (int t = 0; t < options.threads; ++t) impl_->workers.emplace_back([this] { impl_->worker_loop(); });
}

DataLoader::~DataLoader() {
    {
        std::lock_guard<std::mutex> lock(impl_->mutex);
        impl_->stopping = true;
    }
    impl_->work_cv.notify_all();
    for (auto& t : impl_->workers) t.join();
}

std::size_t DataLoader::size() const { return impl_->local_size; }
std::size_t DataLoader::batches_per_epoch() const { return impl_->num_batches(); }
const AugmentSettings& DataLoader::augment() const { return impl_->augment; }

namespace {
std::vector<std::size_t> whole_epoch_order(std::size_t n, bool shuffle, std::uint64_t seed, int epoch) {
    std::vector<std::size_t> order(n);
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    if (shuffle) {
        Rng rng(derive_seed(seed, 0x5f0ffULL, static_cast<std::uint64_t>(epoch)));
        shuffle_in_place(order, rng);
    }
    return order;
}
}  // namespace

LoaderProfile DataLoader::profile() const {
    StageSeconds sum;
    {
        std::lock_guard<std::mutex> lock(impl_->mutex);
        sum = impl_->profile;
    }
    LoaderProfile p;
    for (int i = 0; i < kStageCount; ++i) p.stages.push_back({kStageNames[i], sum.seconds[static_cast<std::size_t>(i)]});
    p.total = sum.total;
    p.images = sum.images;
    return p;
}

void DataLoader::reset_profile() {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    impl_->profile = StageSeconds{};
}

std::vector<std::size_t> DataLoader::epoch_order(int epoch) const {
    const auto whole = whole_epoch_order(impl_->items.size(), impl_->shuffle, impl_->options.seed, epoch);
    if (impl_->options.shard_count == 1) return whole;
    std::vector<std::size_t> out;
    for (std::size_t p : shard_positions(whole.size(), impl_->options.shard_rank, impl_->options.shard_count, impl_->shuffle))
        out.push_back(whole[p % whole.size()]);
    return out;
}

void DataLoader::start_epoch(int epoch, std::size_t first_batch) {
    auto plan = std::make_shared<Impl::Plan>();
    const auto whole = whole_epoch_order(impl_->items.size(), impl_->shuffle, impl_->options.seed, epoch);
    plan->positions = shard_positions(whole.size(), impl_->options.shard_rank, impl_->options.shard_count, impl_->shuffle);
    for (std::size_t p : plan->positions) plan->items.push_back(whole[p % whole.size()]);
    {
        std::lock_guard<std::mutex> lock(impl_->mutex);
        ++impl_->generation;
        impl_->epoch = epoch;
        impl_->order = std::move(plan);
        impl_->next_claim = std::min(first_batch, impl_->num_batches());
        impl_->next_claim_image = 0;
        impl_->next_deliver = impl_->next_claim;
        impl_->claiming.reset();
        impl_->ready.clear();
        impl_->started = true;
    }
    impl_->work_cv.notify_all();
}

std::optional<Batch> DataLoader::next() {
    std::unique_lock<std::mutex> lock(impl_->mutex);
    if (!impl_->started) throw std::logic_error("DataLoader::next called before start_epoch");
    if (impl_->next_deliver >= impl_->num_batches()) return std::nullopt;
    const std::size_t want = impl_->next_deliver;
    impl_->ready_cv.wait(lock, [&] { return impl_->ready.count(want) > 0; });
    Batch b = std::move(impl_->ready.at(want));
    impl_->ready.erase(want);
    ++impl_->next_deliver;
    lock.unlock();
    impl_->work_cv.notify_all();
    return b;
}

std::unique_ptr<DataLoader> make_loader(const Dataset& d, const std::filesystem::path& project, View view,
                                        const AugmentSettings& augment, const LoaderOptions& options) {
    Split split = Split::Train;
    bool training = false, shuffle = false;
    switch (view) {
        case View::Train: split = Split::Train; training = true; shuffle = true; break;
        case View::Valid: split = Split::Valid; break;
        case View::Fix: split = Split::Train; break;
        case View::Aug: split = Split::Valid; training = true; break;
        case View::Test: split = Split::Test; break;
        case View::TestAug: split = Split::Test; training = true; break;
    }
    std::vector<LoadItem> items;
    for (std::size_t i : d.indices(split)) items.push_back({d.resolve(project, d.images[i]), d.images[i].labels, i});
    // TrivialAugmentWide and RandomErasing regularise training; test-time augmentation (the aug
    // views) is the preset's alone, as fastai's TTA.
    AugmentSettings settings = augment;
    if (view != View::Train) {
        settings.trivial_augment = false;
        settings.random_erasing = 0.0;
    }
    return std::make_unique<DataLoader>(std::move(items), training, shuffle, settings, options,
                                        static_cast<int>(d.classes.size()), d.multi_label);
}

}  // namespace whisker::data
