// Swedish traffic signs (SPEC §2.2): annotations.txt is parsed once when the data set opens, each
// JPEG is decoded only when its example is asked for, so a split never sits in memory as a whole.
#include "ips/sts.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <stdexcept>

#include "ips/image_io.h"

namespace fs = std::filesystem;

namespace ips {
namespace {

using torch::indexing::Slice;

const std::vector<std::string> kVisibilities = {"VISIBLE", "BLURRED", "SIDE_ROAD", "OCCLUDED"};
constexpr std::array<int64_t, 2> kDefaultSize{1200, 1600};  // H, W of the reference's Resize
constexpr int64_t kMaxShift = 100;                          // px, the reference's RandomAffine translate

std::string trim(const std::string& s) {
    const char* ws = " \t\r\n";
    size_t a = s.find_first_not_of(ws);
    if (a == std::string::npos) return "";
    return s.substr(a, s.find_last_not_of(ws) - a + 1);
}

std::vector<std::string> split_on(const std::string& s, char sep) {
    std::vector<std::string> out;
    size_t start = 0;
    for (size_t pos; (pos = s.find(sep, start)) != std::string::npos; start = pos + 1)
        out.push_back(s.substr(start, pos - start));
    out.push_back(s.substr(start));
    return out;
}

// The annotations carry typos such as "404.72l": like the reference, drop characters from the end
// until what is left is a number.
bool number_parse(std::string s, double* out) {
    for (; !s.empty(); s.pop_back()) {
        char* end = nullptr;
        double v = std::strtod(s.c_str(), &end);
        if (end == s.c_str() + s.size()) {
            *out = v;
            return true;
        }
    }
    return false;
}

int visibility_index(const std::string& v) {
    auto it = std::find(kVisibilities.begin(), kVisibilities.end(), v);
    return it == kVisibilities.end() ? -1 : static_cast<int>(it - kVisibilities.begin());
}

double area(const StsSign& s) { return (s.x_max - s.x_min) * (s.y_max - s.y_min); }

}  // namespace

std::vector<StsFrame> sts_annotations_read(const std::string& path) {
    std::ifstream in(path);
    if (!in) throw std::runtime_error(path + ": cannot open the annotations file");
    std::vector<StsFrame> frames;
    std::string raw;
    for (int64_t line_no = 1; std::getline(in, raw); ++line_no) {
        const std::string line = trim(raw);  // also drops the '\r' of Windows line endings
        if (line.empty()) continue;
        auto where = [&] { return path + ":" + std::to_string(line_no) + ": "; };
        const size_t colon = line.find(':');
        if (colon == std::string::npos) throw std::runtime_error(where() + "no ':' after the file name");
        StsFrame frame;
        frame.file = trim(line.substr(0, colon));
        for (const std::string& sign_text : split_on(line.substr(colon + 1), ';')) {
            if (trim(sign_text).empty()) continue;  // the trailing ';' of every line
            std::vector<std::string> f = split_on(sign_text, ',');
            for (auto& x : f) x = trim(x);
            if (f[0] == "MISC_SIGNS") continue;  // unannotated clutter, not a sign
            if (f.size() < 7)
                throw std::runtime_error(where() + "sign '" + trim(sign_text) + "' has " + std::to_string(f.size()) +
                                         " fields, expected 7 (VISIBILITY, x_max, y_max, x_min, y_min, TYPE, NAME)");
            if (visibility_index(f[0]) < 0)
                throw std::runtime_error(where() + "unknown visibility '" + f[0] +
                                         "' (known: VISIBLE, BLURRED, SIDE_ROAD, OCCLUDED)");
            StsSign s;
            s.visibility = f[0];
            double* coords[4] = {&s.x_max, &s.y_max, &s.x_min, &s.y_min};
            for (int k = 0; k < 4; ++k)
                if (!number_parse(f[1 + k], coords[k]))
                    throw std::runtime_error(where() + "'" + f[1 + k] + "' is not a number");
            s.type = f[5];
            s.name = f[6];
            frame.signs.push_back(std::move(s));
        }
        frames.push_back(std::move(frame));
    }
    if (in.bad()) throw std::runtime_error(path + ": read error");
    return frames;
}

const std::vector<std::string>& sts_classes() {
    static const std::vector<std::string> classes = {"EMPTY", "50_SIGN", "70_SIGN", "80_SIGN"};
    return classes;
}

int sts_frame_label(const StsFrame& frame) {
    if (frame.signs.empty()) return 0;
    const auto& classes = sts_classes();
    std::vector<const StsSign*> limits;
    for (const StsSign& s : frame.signs)
        if (std::find(classes.begin() + 1, classes.end(), s.name) != classes.end()) limits.push_back(&s);
    if (limits.empty()) return -1;  // other signs only: neither a limit nor empty road
    for (const StsSign* s : limits)
        if (visibility_index(s->visibility) < 0)
            throw std::invalid_argument(frame.file + ": unknown visibility '" + s->visibility + "'");
    // The most visible limit decides, and among equally visible ones the largest (nearest).
    std::stable_sort(limits.begin(), limits.end(), [](const StsSign* a, const StsSign* b) {
        int va = visibility_index(a->visibility), vb = visibility_index(b->visibility);
        return va != vb ? va < vb : area(*a) > area(*b);
    });
    if (limits[0]->visibility != "VISIBLE") return -1;
    return static_cast<int>(std::find(classes.begin(), classes.end(), limits[0]->name) - classes.begin());
}

std::vector<StsLabelledFrame> sts_split_read(const std::string& data_dir, const std::string& split) {
    if (split != "train" && split != "test")
        throw std::invalid_argument("traffic_signs: split must be train or test, got '" + split + "'");
    const fs::path dir = fs::path(data_dir) / (split == "train" ? "Set1" : "Set2");
    if (!fs::is_directory(dir))
        throw std::runtime_error(dir.string() + ": no such folder (traffic_signs " + split + " split)");
    const fs::path ann = dir / "annotations.txt";
    if (!fs::is_regular_file(ann)) throw std::runtime_error(ann.string() + ": no such file");
    std::vector<StsLabelledFrame> out;
    for (const StsFrame& f : sts_annotations_read(ann.string())) {
        int label = sts_frame_label(f);
        if (label >= 0) out.push_back({(dir / f.file).string(), label});
    }
    return out;
}

namespace {

// torchvision's colour jitter on a float [3, H, W] image in [0, 1]; every step clamps to [0, 1].
torch::Tensor grey(const torch::Tensor& x) {  // [1, H, W], ITU-R 601 luma as torchvision
    return luma(x).unsqueeze(0);
}
torch::Tensor blend(const torch::Tensor& x, const torch::Tensor& other, double ratio) {
    return (ratio * x + (1.0 - ratio) * other).clamp(0.0, 1.0);
}

// Rotates the hue by `shift` turns of the colour wheel (RGB -> HSV -> RGB per pixel).
torch::Tensor hue_shift(torch::Tensor x, double shift) {
    x = x.contiguous().clone();
    const int64_t n = x.size(1) * x.size(2);
    float* r = x.data_ptr<float>();
    float* g = r + n;
    float* b = g + n;
    for (int64_t i = 0; i < n; ++i) {
        const float mx = std::max({r[i], g[i], b[i]}), mn = std::min({r[i], g[i], b[i]}), c = mx - mn;
        if (c <= 0.0f) continue;  // grey: no hue to rotate
        float h;
        if (mx == r[i]) h = (g[i] - b[i]) / c;
        else if (mx == g[i]) h = 2.0f + (b[i] - r[i]) / c;
        else h = 4.0f + (r[i] - g[i]) / c;
        double hh = std::fmod(h / 6.0 + shift + 2.0, 1.0) * 6.0;  // in [0, 6)
        const int sector = std::min(5, static_cast<int>(hh));
        const float f = static_cast<float>(hh - sector), s = c / mx, v = mx;
        const float p = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f));
        const float rgb[6][3] = {{v, t, p}, {q, v, p}, {p, v, t}, {p, q, v}, {t, p, v}, {v, p, q}};
        r[i] = rgb[sector][0];
        g[i] = rgb[sector][1];
        b[i] = rgb[sector][2];
    }
    return x;
}

// Integer shift with nearest sampling, as RandomAffine with translation only: content moves by
// (dy, dx); what it uncovers is 0 (black).
torch::Tensor translate(const torch::Tensor& x, int64_t dy, int64_t dx) {
    const int64_t H = x.size(1), W = x.size(2);
    auto out = torch::zeros_like(x);
    if (std::abs(dy) >= H || std::abs(dx) >= W) return out;
    out.index_put_({Slice(), Slice(std::max<int64_t>(0, dy), H + std::min<int64_t>(0, dy)),
                    Slice(std::max<int64_t>(0, dx), W + std::min<int64_t>(0, dx))},
                   x.index({Slice(), Slice(std::max<int64_t>(0, -dy), H - std::max<int64_t>(0, dy)),
                            Slice(std::max<int64_t>(0, -dx), W - std::max<int64_t>(0, dx))}));
    return out;
}

// The draws of one train-time augmentation, taken under the data set's lock.
struct Augment {
    std::array<int, 4> order{0, 1, 2, 3};  // 0 brightness, 1 contrast, 2 saturation, 3 hue
    double brightness = 1, contrast = 1, saturation = 1, hue = 0;
    int64_t dy = 0, dx = 0;
};

torch::Tensor augment_apply(const torch::Tensor& img, const Augment& a) {  // uint8 [3, H, W]
    torch::Tensor x = img.to(torch::kFloat32).div_(255.0);
    for (int op : a.order) {
        switch (op) {
            case 0: x = (x * a.brightness).clamp(0.0, 1.0); break;
            case 1: x = blend(x, grey(x).mean(), a.contrast); break;
            case 2: x = blend(x, grey(x), a.saturation); break;
            case 3: x = hue_shift(x, a.hue); break;
        }
    }
    x = translate(x, a.dy, a.dx);
    return x.mul_(255.0).round_().clamp_(0.0, 255.0).to(torch::kUInt8);
}

struct StsDataset : Dataset {
    StsDataset(const Config& c, const std::string& split_) : cfg(c), split(split_), rng(static_cast<uint64_t>(c.seed)) {
        if (split != "train" && split != "test")
            throw std::invalid_argument("traffic_signs: split must be train or test, got '" + split + "'");
        if (cfg.data.data_dir.empty())
            throw ConfigError("config key 'data_dir': empty; traffic_signs needs the folder holding Set1 and Set2");
        if (!cfg.model.is_image) throw ConfigError("config key 'is_image': traffic_signs holds images");
        if (cfg.model.n_chan_in != 3)
            throw ConfigError("config key 'n_chan_in': traffic_signs frames are RGB (3 channels), not " +
                              std::to_string(cfg.model.n_chan_in));
        // The reference gives every task the frame's class; a softmax head needs exactly the 4 classes.
        if (cfg.model.n_class != 4)
            throw ConfigError("config key 'n_class': traffic_signs has 4 classes (EMPTY, 50_SIGN, 70_SIGN, "
                              "80_SIGN), not " + std::to_string(cfg.model.n_class));
        bool softmax = false;
        for (const Task& t : cfg.model.tasks) softmax = softmax || t.act_fn == ActFn::softmax;
        if (!softmax) throw ConfigError("config key 'tasks': traffic_signs needs a softmax task over its 4 classes");
        hw = (cfg.data.img_size[0] > 0 && cfg.data.img_size[1] > 0) ? cfg.data.img_size : kDefaultSize;
        int64_t n = 0;
        try {
            auto g = grid_shape(hw[0], hw[1], cfg.data.patch_size, cfg.data.patch_stride);
            n = g[0] * g[1];
        } catch (const std::invalid_argument& e) {
            throw ConfigError("config key 'patch_size': " + std::string(e.what()));
        }
        if (cfg.data.N > 0 && n != cfg.data.N)
            throw ConfigError("config key 'N': is " + std::to_string(cfg.data.N) + ", but " + std::to_string(hw[0]) +
                              "x" + std::to_string(hw[1]) + " frames with this patch grid give N = " +
                              std::to_string(n));
        frames = sts_split_read(cfg.data.data_dir, split);
    }

    int64_t size() const override { return static_cast<int64_t>(frames.size()); }

    Example get(int64_t i) override {
        if (i < 0 || i >= size())
            throw std::out_of_range("traffic_signs " + split + ": index " + std::to_string(i) + " of " +
                                    std::to_string(size()));
        const StsLabelledFrame& frame = frames[static_cast<size_t>(i)];
        torch::Tensor img = image_resize(image_read(frame.path, 3), hw[0], hw[1]);  // [3, H, W] uint8
        if (split == "train") img = augment_apply(img, draw());
        Example ex;
        ex.name = frame.path;
        ex.source = image_source_make(img, cfg.data);
        for (const Task& t : cfg.model.tasks) {
            if (t.act_fn == ActFn::softmax) {
                ex.targets.push_back(torch::tensor(static_cast<int64_t>(frame.label), torch::kInt64));
            } else {  // a sigmoid head over the same classes: the frame's class one-hot
                auto hot = torch::zeros({cfg.model.n_class}, torch::kFloat32);  // [4]
                hot[frame.label] = 1.0f;
                ex.targets.push_back(hot);
            }
        }
        return ex;
    }

    // One generator per data set that advances on every get(), so each epoch sees new draws.
    Augment draw() {
        std::lock_guard<std::mutex> lock(mu);
        Augment a;
        std::shuffle(a.order.begin(), a.order.end(), rng);
        std::uniform_real_distribution<double> factor(0.9, 1.1), hue(-0.1, 0.1);
        a.brightness = factor(rng);
        a.contrast = factor(rng);
        a.saturation = factor(rng);
        a.hue = hue(rng);
        std::uniform_int_distribution<int64_t> shift(-kMaxShift, kMaxShift);
        a.dx = shift(rng);
        a.dy = shift(rng);
        return a;
    }

    Config cfg;
    std::string split;
    std::array<int64_t, 2> hw{0, 0};  // H, W every frame is resized to
    std::vector<StsLabelledFrame> frames;
    std::mutex mu;
    std::mt19937_64 rng;
};

}  // namespace

DatasetPtr sts_dataset_make(const Config& cfg, const std::string& split) {
    return std::make_shared<StsDataset>(cfg, split);
}

}  // namespace ips
