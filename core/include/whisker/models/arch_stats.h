#pragma once
// What a user weighs when choosing an architecture, beyond the table in zoo.h: its compute
// (counted multiply-accumulates) and its measured speed on this machine.
//
// Compute: the multiply-accumulates of convolutions and matrix products in one forward pass,
// counted op by op while the network runs (ATen's RecordFunction observers on this thread), in
// billions ("GFLOPs" as torchvision publishes them, which are multiply-accumulates too).
//
// Speed: `whisker-cli bench train|predict --arch A` records its images/s per architecture in
// the user's cache ($XDG_CACHE_HOME/whisker/speed.json, default ~/.cache/whisker), so the
// workbench's architecture table can show what was measured here. Written atomically; a
// damaged file reads as empty (and is rewritten by the next benchmark).

#include "whisker/models/zoo.h"

#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>

namespace whisker::models {

// Billions of multiply-accumulates of `forward` (which runs a network once); counts only what
// runs on the calling thread's dispatcher (intra-op worker threads run no ops of their own).
double count_gmacs(const std::function<void()>& forward);
// Of the whole ImageNet classifier (torchvision's head included) on one size x size image.
double architecture_gflops(Arch arch, int size);

struct SpeedRecord {
    double images_per_second = 0;
    int size = 0;
    int batch_size = 0;
    std::string device;     // ComputeDevice::describe()
    std::string when;       // local time, "2026-12-01 14:05"
};
struct ArchSpeed {
    std::optional<SpeedRecord> train, predict;
};

std::filesystem::path speed_records_file();
// Architecture name -> what was measured; empty when nothing was.
std::map<std::string, ArchSpeed> read_speed_records();
// kind: "train" or "predict". Replaces that architecture's earlier record of the kind.
void record_speed(const std::string& arch, const std::string& kind, const SpeedRecord& record);

}  // namespace whisker::models
