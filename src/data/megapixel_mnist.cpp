// Megapixel MNIST generator (SPEC §2.1) and the labels.csv format shared with the reader.
//
// Generation rules (what SPEC leaves open is decided here):
//  * target class uniform over 0..9; 3 digits of the target class, then 2 digits whose classes are
//    drawn independently and uniformly from the 9 other classes, so the two may be equal. Either way
//    the target stays the strict majority (3 vs at most 2). Digits are drawn uniformly from their
//    class in the split, with replacement.
//  * the 5 digit boxes (h x w of the source digits) do not overlap, and their top edges are pairwise
//    distinct, so "the digit nearest the top" is never a tie. Positions are uniform, by rejection.
//  * n_noise scribbles: 1-3 straight strokes (radius 0.8-1.5 px) in a 28x28 box, one grey level in
//    [0.8, 1.0] per scribble, flipped independently on each axis with probability 1/2, at a uniform
//    position (they may overlap each other and the digits).
//  * painting is per-pixel max, noise first then digits: a digit's black background then does not
//    punch a black square into the noise, and its strokes always show at full value.
//  * every random draw of image i of split s comes from one mt19937_64 seeded by (seed, s, i), and we
//    map its raw 64-bit outputs to ranges ourselves (std:: distributions differ between standard
//    libraries), so the data set is the same for any thread count and any platform.
#include "ips/megapixel_mnist.h"

#include <vips/vips8>

#include "ips/files.h"
#include "ips/image_io.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>

namespace fs = std::filesystem;

namespace ips {
namespace {

std::mt19937_64 image_rng(uint64_t seed, const std::string& split, int64_t index) {
    const uint32_t split_id = split == "train" ? 1 : 2;
    const auto i = static_cast<uint64_t>(index);
    std::seed_seq seq{uint32_t(seed), uint32_t(seed >> 32), split_id, uint32_t(i), uint32_t(i >> 32)};
    return std::mt19937_64(seq);
}

// Uniform in [0, n): rejection removes the modulo bias.
uint64_t rand_below(std::mt19937_64& rng, uint64_t n) {
    const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t r;
    do r = rng();
    while (r >= limit);
    return r % n;
}

double rand_unit(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }

struct Box {
    int64_t x, y, w, h;
};
bool boxes_overlap(const Box& a, const Box& b) {
    return a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;
}

// Positions for n boxes of w x h: pairwise disjoint, distinct top edges. Restarts the whole layout
// when a box finds no room (earlier boxes can fence the canvas off on small canvases).
std::vector<Box> layout_draw(std::mt19937_64& rng, int64_t W, int64_t H, int64_t w, int64_t h, int n) {
    for (int attempt = 0; attempt < 1000; ++attempt) {
        std::vector<Box> boxes;
        for (int k = 0; k < n; ++k) {
            bool placed = false;
            for (int tries = 0; tries < 1000 && !placed; ++tries) {
                Box b{static_cast<int64_t>(rand_below(rng, W - w + 1)),
                      static_cast<int64_t>(rand_below(rng, H - h + 1)), w, h};
                placed = std::none_of(boxes.begin(), boxes.end(), [&](const Box& o) {
                    return o.y == b.y || boxes_overlap(o, b);
                });
                if (placed) boxes.push_back(b);
            }
            if (!placed) break;
        }
        if (static_cast<int>(boxes.size()) == n) return boxes;
    }
    throw std::runtime_error("megapixel MNIST: cannot place " + std::to_string(n) + " digits on a " +
                             std::to_string(W) + "x" + std::to_string(H) + " canvas");
}

// One noise scribble painted (max) onto the canvas.
void scribble_paint(std::mt19937_64& rng, uint8_t* canvas, int64_t W, int64_t H) {
    constexpr int S = kNoiseSide;
    std::array<uint8_t, S * S> pattern{};
    const int n_strokes = 1 + static_cast<int>(rand_below(rng, 3));
    for (int s = 0; s < n_strokes; ++s) {
        double x0, y0, x1, y1;
        do {  // strokes shorter than a third of the box would be dots, not lines
            x0 = rand_unit(rng) * (S - 1), y0 = rand_unit(rng) * (S - 1);
            x1 = rand_unit(rng) * (S - 1), y1 = rand_unit(rng) * (S - 1);
        } while (std::hypot(x1 - x0, y1 - y0) < S / 3.0);
        const double radius = 0.8 + 0.7 * rand_unit(rng);
        const double dx = x1 - x0, dy = y1 - y0, len2 = dx * dx + dy * dy;
        for (int py = 0; py < S; ++py)
            for (int px = 0; px < S; ++px) {
                double t = std::clamp(((px - x0) * dx + (py - y0) * dy) / len2, 0.0, 1.0);
                if (std::hypot(px - (x0 + t * dx), py - (y0 + t * dy)) <= radius) pattern[py * S + px] = 1;
            }
    }
    const auto level = static_cast<uint8_t>(std::lround((0.8 + 0.2 * rand_unit(rng)) * 255.0));
    const bool flip_x = rng() & 1, flip_y = rng() & 1;
    const auto ox = static_cast<int64_t>(rand_below(rng, W - S + 1));
    const auto oy = static_cast<int64_t>(rand_below(rng, H - S + 1));
    for (int py = 0; py < S; ++py) {
        uint8_t* row = canvas + (oy + py) * W + ox;
        const int sy = flip_y ? S - 1 - py : py;
        for (int px = 0; px < S; ++px) {
            const int sx = flip_x ? S - 1 - px : px;
            if (pattern[sy * S + sx]) row[px] = std::max(row[px], level);
        }
    }
}

std::string file_name(int64_t index, int64_t total) {
    const int width = std::max<int>(5, static_cast<int>(std::to_string(std::max<int64_t>(total - 1, 0)).size()));
    std::string s = std::to_string(index);
    return std::string(static_cast<size_t>(std::max<int>(0, width - static_cast<int>(s.size()))), '0') + s + ".png";
}

void png_gray_write(const std::string& path, std::vector<uint8_t>& canvas /*[H*W]*/, int64_t W, int64_t H,
                    int compression) {
    try {
        vips::VImage img = vips::VImage::new_from_memory(canvas.data(), canvas.size(), static_cast<int>(W),
                                                         static_cast<int>(H), 1, VIPS_FORMAT_UCHAR);
        // Not png_write (image_io.h): this writes straight from the canvas without a tensor copy and
        // without row filters, which on black-dominated canvases buy little and cost time.
        img.pngsave(path.c_str(), vips::VImage::option()
                                      ->set("compression", compression)
                                      ->set("filter", static_cast<int>(VIPS_FOREIGN_PNG_FILTER_NONE))
                                      ->set("strip", true));
    } catch (const vips::VError& e) {
        throw std::runtime_error(path + ": cannot write PNG: " + e.what());
    }
}

void options_check(const MegapixelMnistOptions& opt, int64_t h, int64_t w) {
    // Three digit heights/widths on each side always leave room for 5 disjoint boxes.
    if (opt.width < 3 * w || opt.height < 3 * h)
        throw std::invalid_argument("megapixel MNIST: canvas " + std::to_string(opt.width) + "x" +
                                    std::to_string(opt.height) + " is too small; each side needs at least " +
                                    std::to_string(3 * std::max(w, h)) + " pixels");
    if (opt.width < kNoiseSide || opt.height < kNoiseSide)
        throw std::invalid_argument("megapixel MNIST: canvas smaller than a 28x28 noise scribble");
    if (opt.n_train < 0 || opt.n_test < 0 || opt.n_noise < 0)
        throw std::invalid_argument("megapixel MNIST: image and noise counts must be >= 0");
    if (opt.png_compression < 0 || opt.png_compression > 9)
        throw std::invalid_argument("megapixel MNIST: PNG compression must be 0..9");
}

// Renders and writes images [0, n) of one split on `threads` threads; returns their records.
std::vector<MegapixelMnistRecord> split_generate(const MegapixelMnistOptions& opt, const DigitPool& pool,
                                                 const std::string& split, int64_t n, int threads,
                                                 const GenerateProgress& progress) {
    const fs::path dir = fs::path(opt.out) / split;
    fs::create_directories(dir);
    std::vector<MegapixelMnistRecord> records(static_cast<size_t>(n));
    std::atomic<int64_t> next{0}, done{0};
    std::atomic<bool> failed{false};
    std::exception_ptr error;
    std::mutex mutex;
    std::condition_variable finished;
    int running = threads;
    auto work = [&] {
        std::vector<uint8_t> canvas;
        try {
            for (int64_t i = next++; i < n && !failed; i = next++) {
                records[i] = megapixel_mnist_render(opt, pool, split, i, canvas);
                png_gray_write((dir / records[i].file).string(), canvas, opt.width, opt.height,
                               opt.png_compression);
                ++done;
            }
        } catch (...) {
            std::lock_guard<std::mutex> lock(mutex);
            if (!error) error = std::current_exception();
            failed = true;
        }
        std::lock_guard<std::mutex> lock(mutex);
        if (--running == 0) finished.notify_all();
    };
    if (progress) progress(split, 0, n);
    std::vector<std::thread> pool_threads;
    for (int t = 0; t < threads; ++t) pool_threads.emplace_back(work);
    // This thread only reports progress, so callbacks need not be thread-safe.
    for (bool all_done = false; !all_done;) {
        std::unique_lock<std::mutex> lock(mutex);
        all_done = finished.wait_for(lock, std::chrono::milliseconds(200), [&] { return running == 0; });
        lock.unlock();
        if (progress && !all_done) progress(split, done, n);
    }
    for (auto& t : pool_threads) t.join();
    if (error) std::rethrow_exception(error);
    if (progress) progress(split, n, n);
    return records;
}

}  // namespace

DigitPool digit_pool_make(DigitSet set, const std::string& what) {
    if (!set.images.defined() || set.images.dim() != 3 || set.images.scalar_type() != torch::kUInt8)
        throw std::runtime_error(what + ": digit images must be a [n, h, w] uint8 tensor");
    if (!set.labels.defined() || set.labels.dim() != 1 || set.labels.size(0) != set.images.size(0))
        throw std::runtime_error(what + ": need one label per digit image");
    DigitPool pool;
    pool.set.images = set.images.contiguous();
    pool.set.labels = set.labels.to(torch::kInt64).contiguous();
    pool.by_class.resize(kMegapixelClasses);
    const int64_t* labels = pool.set.labels.data_ptr<int64_t>();
    for (int64_t i = 0; i < pool.set.labels.size(0); ++i) {
        if (labels[i] < 0 || labels[i] >= kMegapixelClasses)
            throw std::runtime_error(what + ": digit " + std::to_string(i) + " has label " +
                                     std::to_string(labels[i]) + ", outside 0..9");
        pool.by_class[labels[i]].push_back(i);
    }
    for (int c = 0; c < kMegapixelClasses; ++c)
        if (pool.by_class[c].empty())
            throw std::runtime_error(what + ": no digit of class " + std::to_string(c));
    return pool;
}

void megapixel_mnist_labels_compute(MegapixelMnistRecord& rec) {
    std::array<int, kMegapixelClasses> count{};
    rec.multi.fill(0);
    rec.max = -1;
    int64_t top_y = INT64_MAX;
    for (const auto& d : rec.digits) {
        ++count[d.label];
        rec.multi[d.label] = 1;
        rec.max = std::max(rec.max, d.label);
        if (d.y < top_y) top_y = d.y, rec.top = d.label;
    }
    rec.majority = std::max_element(count.begin(), count.end()) - count.begin();
}

MegapixelMnistRecord megapixel_mnist_render(const MegapixelMnistOptions& opt, const DigitPool& pool,
                                            const std::string& split, int64_t index,
                                            std::vector<uint8_t>& canvas) {
    const int64_t W = opt.width, H = opt.height;
    const int64_t h = pool.set.images.size(1), w = pool.set.images.size(2);
    auto rng = image_rng(opt.seed, split, index);

    MegapixelMnistRecord rec;
    rec.file = file_name(index, split == "train" ? opt.n_train : opt.n_test);
    const auto target = static_cast<int64_t>(rand_below(rng, kMegapixelClasses));
    for (int k = 0; k < kMegapixelDigits; ++k) {
        int64_t label = target;
        if (k >= kMegapixelTargetDigits) {  // one of the 9 other classes
            label = static_cast<int64_t>(rand_below(rng, kMegapixelClasses - 1));
            if (label >= target) ++label;
        }
        const auto& members = pool.by_class[label];
        rec.digits.push_back({label, 0, 0, members[rand_below(rng, members.size())]});
    }
    const auto boxes = layout_draw(rng, W, H, w, h, kMegapixelDigits);
    for (int k = 0; k < kMegapixelDigits; ++k) rec.digits[k].x = boxes[k].x, rec.digits[k].y = boxes[k].y;
    megapixel_mnist_labels_compute(rec);

    canvas.assign(static_cast<size_t>(W * H), 0);
    for (int k = 0; k < opt.n_noise; ++k) scribble_paint(rng, canvas.data(), W, H);
    const uint8_t* images = pool.set.images.data_ptr<uint8_t>();  // [n, h, w]
    for (const auto& d : rec.digits) {
        const uint8_t* digit = images + d.index * h * w;
        for (int64_t r = 0; r < h; ++r) {
            uint8_t* row = canvas.data() + (d.y + r) * W + d.x;
            for (int64_t c = 0; c < w; ++c) row[c] = std::max(row[c], digit[r * w + c]);
        }
    }
    return rec;
}

void megapixel_mnist_generate(const MegapixelMnistOptions& opt, const DigitSet& train, const DigitSet& test,
                              const std::string& digits_format, const GenerateProgress& progress) {
    vips_ensure_init();
    const std::string what = opt.digits.empty() ? std::string("digit source") : opt.digits;
    const DigitPool train_pool = digit_pool_make(train, what + " (train)");
    const DigitPool test_pool = digit_pool_make(test, what + " (test)");
    if (train_pool.set.images.sizes().slice(1) != test_pool.set.images.sizes().slice(1))
        throw std::runtime_error(what + ": train and test digits differ in size");
    options_check(opt, train_pool.set.images.size(1), train_pool.set.images.size(2));
    if (opt.out.empty()) throw std::invalid_argument("megapixel MNIST: no output folder");
    const int threads = opt.threads > 0 ? opt.threads : std::max(1u, std::thread::hardware_concurrency());

    auto split_write = [&](const std::string& split, const DigitPool& pool, int64_t n) {
        auto records = split_generate(opt, pool, split, n, threads, progress);
        megapixel_mnist_labels_write((fs::path(opt.out) / split / "labels.csv").string(), records);
    };
    split_write("train", train_pool, opt.n_train);
    split_write("test", test_pool, opt.n_test);
    // meta.json last: its presence says the folder is complete.
    nlohmann::json meta = {
        {"format", "megapixel_mnist"}, {"version", 1},
        {"width", opt.width},          {"height", opt.height},
        {"n_train", opt.n_train},      {"n_test", opt.n_test},
        {"n_noise", opt.n_noise},      {"seed", opt.seed},
        {"digits", opt.digits.empty() ? std::string() : fs::absolute(opt.digits).string()},        {"digits_format", digits_format},
        {"digit_height", train_pool.set.images.size(1)}, {"digit_width", train_pool.set.images.size(2)},
        {"n_train_digits", train_pool.set.images.size(0)}, {"n_test_digits", test_pool.set.images.size(0)},
    };
    text_write_atomic((fs::path(opt.out) / "meta.json").string(), meta.dump(2) + "\n");
}

void megapixel_mnist_generate(const MegapixelMnistOptions& opt, const GenerateProgress& progress) {
    const DigitFormat format = mnist_source_detect(opt.digits);
    DigitSet train = mnist_digits_load(opt.digits, "train");
    DigitSet test = mnist_digits_load(opt.digits, "test");
    megapixel_mnist_generate(opt, train, test, digit_format_name(format), progress);
}

std::vector<MegapixelMnistRecord> megapixel_mnist_labels_read(const std::string& path) {
    std::ifstream in(path);
    if (!in) throw std::runtime_error(path + ": cannot open (not a generated Megapixel MNIST split?)");
    std::string line;
    std::getline(in, line);
    if (line.rfind("file,majority,max,top,multi", 0) != 0)
        throw std::runtime_error(path + ": not a Megapixel MNIST labels file (bad header)");
    std::vector<MegapixelMnistRecord> records;
    int64_t line_no = 1;
    while (std::getline(in, line)) {
        ++line_no;
        if (line.empty()) continue;
        auto bad = [&](const std::string& why) {
            return std::runtime_error(path + ":" + std::to_string(line_no) + ": " + why);
        };
        std::vector<std::string> f;
        std::stringstream ss(line);
        for (std::string cell; std::getline(ss, cell, ',');) f.push_back(cell);
        if (f.size() != 5 + 4 * kMegapixelDigits)
            throw bad("expected " + std::to_string(5 + 4 * kMegapixelDigits) + " fields, found " +
                      std::to_string(f.size()));
        auto num = [&](const std::string& s) -> int64_t {
            size_t used = 0;
            int64_t v = 0;
            try {
                v = std::stoll(s, &used);
            } catch (const std::exception&) {
                used = 0;
            }
            if (used == 0 || used != s.size()) throw bad("'" + s + "' is not an integer");
            return v;
        };
        MegapixelMnistRecord rec;
        rec.file = f[0];
        rec.majority = num(f[1]), rec.max = num(f[2]), rec.top = num(f[3]);
        if (f[4].size() != kMegapixelClasses || f[4].find_first_not_of("01") != std::string::npos)
            throw bad("multi '" + f[4] + "' is not 10 characters of 0/1");
        for (int c = 0; c < kMegapixelClasses; ++c) rec.multi[c] = f[4][c] == '1';
        for (int k = 0; k < kMegapixelDigits; ++k)
            rec.digits.push_back({num(f[5 + 4 * k]), num(f[6 + 4 * k]), num(f[7 + 4 * k]), num(f[8 + 4 * k])});
        for (int64_t v : {rec.majority, rec.max, rec.top})
            if (v < 0 || v >= kMegapixelClasses) throw bad("label " + std::to_string(v) + " outside 0..9");
        records.push_back(std::move(rec));
    }
    return records;
}

void megapixel_mnist_labels_write(const std::string& path, const std::vector<MegapixelMnistRecord>& records) {
    std::ostringstream out;
    out << "file,majority,max,top,multi";
    for (int k = 0; k < kMegapixelDigits; ++k)
        out << ",d" << k << "_label,d" << k << "_x,d" << k << "_y,d" << k << "_index";
    out << "\n";
    for (const auto& r : records) {
        out << r.file << ',' << r.majority << ',' << r.max << ',' << r.top << ',';
        for (uint8_t m : r.multi) out << (m ? '1' : '0');
        for (const auto& d : r.digits) out << ',' << d.label << ',' << d.x << ',' << d.y << ',' << d.index;
        out << "\n";
    }
    text_write_atomic(path, out.str());
}

}  // namespace ips
