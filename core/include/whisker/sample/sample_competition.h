#pragma once
// The built-in sample competition: a synthetic "Dogs vs. Cats Redux" with Kaggle's exact file
// layout, so every feature can be tried (and tested) without a download.
//
//   DIR/train.zip               train/cat.<i>.jpg, train/dog.<i>.jpg
//   DIR/test.zip                test/<id>.jpg (ids 1..M)
//   DIR/sample_submission.csv   id,label (label 0.5, as Kaggle's)
//   DIR/sample_solution.csv     id,label (1 = dog): the answer key, for scoring offline;
//                               Kaggle keeps this one secret
//   DIR/sample_boxes.csv        file,x0,y0,x1,y1: where each image's animal is, in pixels of
//                               the written image (x1, y1 exclusive), for train/ and test/ —
//                               the ground truth for "where the model looked" (Grad-CAM)
//
// Images are drawn procedurally: a cat or a dog seen from the side (ears pointed or floppy,
// snout short or long, tail long and thin or short and thick, whiskers, eyes), in random
// size (150-500 px, not square), pose, colour and pattern, on a cluttered background, with
// occluders, blur, noise and JPEG artefacts. The cues overlap between the classes (some dogs
// have pointed ears, some cats folded ones), so the task is learnable but not trivial.
// Same options and seed: the same bytes, on any machine (no std:: distributions are used).

#include "whisker/common/parallel.h"

#include <opencv2/core/mat.hpp>

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>

namespace whisker::sample {

struct SampleOptions {
    int train_images = 400;     // split evenly between cats and dogs (cats get the odd one)
    int test_images = 100;
    std::uint64_t seed = 2017;
    int threads = 0;
    ProgressFn progress;
    const std::atomic<bool>* cancel = nullptr;
};

// Writes the competition into `dir` (created if needed). Archives are written atomically.
void write_sample_competition(const std::filesystem::path& dir, const SampleOptions& options = {});

// One image (8-bit RGB): what write_sample_competition stores, before JPEG encoding. With
// `animal_box`, also the animal's bounding box: every pixel its drawing changed (body, head,
// ears, legs, tail, whiskers), before occluders, blur and noise; the image is the same either way.
cv::Mat draw_animal(bool dog, std::uint64_t seed, cv::Rect* animal_box = nullptr);

// DIR/sample_boxes.csv: archive member name ("train/cat.0.jpg", "test/1.jpg") -> the animal's
// box in pixels. UserError when the file is missing or damaged.
std::map<std::string, cv::Rect> read_sample_boxes(const std::filesystem::path& dir);

}  // namespace whisker::sample
