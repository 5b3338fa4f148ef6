// The pickler of torch.save files: what pickle_value writes, read back by pickle_load (the reader
// that also reads Python's pickles, pickle_read_test.cpp): plain values, nested dicts, tensors as
// storage records, and values it cannot write named by their key.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>

#include "../../src/interop/pickle_read.h"
#include "../../src/interop/pickle_write.h"
#include "test_support.h"

using namespace ips::detail;
using ips::test::error_of;

namespace {

c10::impl::GenericDict dict_new() { return c10::impl::GenericDict(c10::StringType::get(), c10::AnyType::get()); }

// Loads what pickle_value wrote, serving each storage record from `storages` as torch.load would
// from the archive (a 1-D tensor over the whole storage).
PyRef load(const std::string& program, const std::vector<torch::Tensor>& storages) {
    return pickle_load(program, [&](const std::string& key, torch::ScalarType dtype, int64_t numel) {
        const torch::Tensor& s = storages.at(std::stoul(key));
        EXPECT_EQ(dtype, s.scalar_type()) << key;
        EXPECT_EQ(numel, s.numel()) << key;
        return s.reshape({-1});
    });
}

PyRef item(const PyRef& dict, const std::string& key) {
    for (const auto& [k, v] : dict->dict)
        if (k->kind == PyKind::str && k->s == key) return v;
    ADD_FAILURE() << "no key '" << key << "'";
    return std::make_shared<PyValue>();
}

}  // namespace

TEST(PickleWrite, PlainValuesRoundTrip) {
    const std::vector<int64_t> ints = {0,         1,         255,       256,          65535,
                                       65536,     -1,        -256,      INT32_MIN,    INT32_MAX,
                                       int64_t(INT32_MAX) + 1, int64_t(1) << 40, -(int64_t(1) << 40),
                                       std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max()};
    const std::vector<double> floats = {0.0, -0.0, 1.5, -2.25e-300, 1e300, 0.1, std::numeric_limits<double>::infinity()};
    const std::vector<std::string> strings = {"", "epoch", "h\xC3\xA9llo \xE2\x9C\x93", "two\nlines", std::string("nul\0in", 6)};
    auto root = dict_new();
    for (size_t k = 0; k < ints.size(); ++k) root.insert("i" + std::to_string(k), ints[k]);
    for (size_t k = 0; k < floats.size(); ++k) root.insert("f" + std::to_string(k), floats[k]);
    for (size_t k = 0; k < strings.size(); ++k) root.insert("s" + std::to_string(k), strings[k]);
    root.insert("nan", std::numeric_limits<double>::quiet_NaN());
    root.insert("yes", true);
    root.insert("no", false);
    root.insert("none", c10::IValue());
    auto inner = dict_new();
    inner.insert("lr", 0.001);
    inner.insert("empty", dict_new());
    root.insert("optimizer", inner);

    std::vector<torch::Tensor> storages;
    const std::string program = pickle_value(root, storages);
    EXPECT_TRUE(storages.empty());
    EXPECT_EQ(program.substr(0, 2), std::string("\x80\x02", 2));  // protocol 2, as torch.save
    EXPECT_EQ(program.back(), '.');
    EXPECT_EQ(program[2], '}');  // a dict with plain values is a dict, not an OrderedDict

    const PyRef got = load(program, storages);
    ASSERT_EQ(got->kind, PyKind::dict);
    ASSERT_EQ(got->dict.size(), root.size());
    size_t k = 0;
    for (const auto& entry : root) {  // insertion order is kept
        EXPECT_EQ(got->dict[k].first->s, entry.key().toStringRef());
        ++k;
    }
    for (size_t j = 0; j < ints.size(); ++j) {
        const PyRef v = item(got, "i" + std::to_string(j));
        EXPECT_EQ(v->kind, PyKind::integer);
        EXPECT_EQ(v->i, ints[j]);
    }
    for (size_t j = 0; j < floats.size(); ++j) {
        const PyRef v = item(got, "f" + std::to_string(j));
        EXPECT_EQ(v->kind, PyKind::floating);
        EXPECT_EQ(v->f, floats[j]);
        EXPECT_EQ(std::signbit(v->f), std::signbit(floats[j])) << floats[j];
    }
    for (size_t j = 0; j < strings.size(); ++j) {
        const PyRef v = item(got, "s" + std::to_string(j));
        EXPECT_EQ(v->kind, PyKind::str);
        EXPECT_EQ(v->s, strings[j]);
    }
    EXPECT_TRUE(std::isnan(item(got, "nan")->f));
    EXPECT_EQ(item(got, "yes")->kind, PyKind::boolean);
    EXPECT_TRUE(item(got, "yes")->b);
    EXPECT_FALSE(item(got, "no")->b);
    EXPECT_EQ(item(got, "none")->kind, PyKind::none);
    const PyRef opt = item(got, "optimizer");
    ASSERT_EQ(opt->kind, PyKind::dict);
    EXPECT_EQ(item(opt, "lr")->f, 0.001);
    EXPECT_EQ(item(opt, "empty")->kind, PyKind::dict);
    EXPECT_TRUE(item(opt, "empty")->dict.empty());

    // A root that is not a dict is written as well.
    std::vector<torch::Tensor> none;
    EXPECT_EQ(load(pickle_value(c10::IValue(int64_t(-7)), none), none)->i, -7);
    EXPECT_EQ(load(pickle_value(c10::IValue(std::string("x")), none), none)->s, "x");
}

TEST(PickleWrite, TensorsBecomeStorageRecordsInOrder) {
    using torch::indexing::Slice;
    const std::vector<std::pair<std::string, torch::Tensor>> tensors = {
        {"w", torch::arange(12, torch::kFloat).reshape({3, 4})},
        {"t", torch::arange(24, torch::kFloat).reshape({2, 3, 4}).transpose(1, 2)},  // not contiguous
        {"slice", torch::arange(20, torch::kDouble).reshape({4, 5}).index({Slice(), Slice(1, 4)})},
        {"h", torch::arange(6).to(torch::kHalf) / 4},
        {"bf", torch::arange(5).to(torch::kBFloat16) * 3},
        {"l", torch::arange(4) * int64_t(1000000000000) - 7},
        {"mask", torch::arange(6).remainder(2) == 0},
        {"u8", torch::arange(256).to(torch::kByte)},
        {"scalar", torch::tensor(3.5)},
        {"empty", torch::empty({0, 3})},
        {"param", torch::ones({2}, torch::requires_grad())},
    };
    auto sd = dict_new();
    for (const auto& [k, t] : tensors) sd.insert(k, t);
    std::vector<torch::Tensor> storages;
    const std::string program = pickle_value(sd, storages);
    // A dict of tensors only is an OrderedDict, as a state_dict is.
    EXPECT_EQ(program.substr(2, 24), "ccollections\nOrderedDict");
    ASSERT_EQ(storages.size(), tensors.size());
    for (size_t k = 0; k < tensors.size(); ++k) {
        EXPECT_TRUE(storages[k].is_contiguous()) << tensors[k].first;
        EXPECT_TRUE(torch::equal(storages[k], tensors[k].second.detach())) << tensors[k].first;
    }

    const PyRef got = load(program, storages);
    ASSERT_EQ(got->dict.size(), tensors.size());
    for (size_t k = 0; k < tensors.size(); ++k) {
        const auto& [key, want] = tensors[k];
        EXPECT_EQ(got->dict[k].first->s, key);
        const PyRef v = got->dict[k].second;
        ASSERT_EQ(v->kind, PyKind::tensor) << key;
        EXPECT_EQ(v->tensor.scalar_type(), want.scalar_type()) << key;
        EXPECT_EQ(v->tensor.sizes(), want.sizes()) << key;
        EXPECT_TRUE(v->tensor.is_contiguous()) << key;
        EXPECT_TRUE(torch::equal(v->tensor, want.detach())) << key;
    }

    // Tensors among plain values: a dict, the tensors still numbered in the order written.
    auto ckpt = dict_new();
    ckpt.insert("epoch", int64_t(3));
    ckpt.insert("model", sd);
    ckpt.insert("best", torch::tensor({0.5f}));
    std::vector<torch::Tensor> more;
    const PyRef back = load(pickle_value(ckpt, more), more);
    ASSERT_EQ(more.size(), tensors.size() + 1);
    EXPECT_TRUE(torch::equal(more.back(), torch::tensor({0.5f})));
    EXPECT_EQ(item(back, "epoch")->i, 3);
    EXPECT_TRUE(torch::equal(item(item(back, "model"), "w")->tensor, tensors[0].second));
    EXPECT_TRUE(torch::equal(item(back, "best")->tensor, torch::tensor({0.5f})));
}

TEST(PickleWrite, LargeDictsKeepEveryItem) {
    auto root = dict_new();  // more items than one SETITEMS batch (1000)
    for (int k = 0; k < 2500; ++k) root.insert("k" + std::to_string(k), int64_t(k * 7));
    std::vector<torch::Tensor> storages;
    const PyRef got = load(pickle_value(root, storages), storages);
    ASSERT_EQ(got->dict.size(), 2500u);
    for (int k = 0; k < 2500; k += 499) {
        EXPECT_EQ(got->dict[size_t(k)].first->s, "k" + std::to_string(k));
        EXPECT_EQ(got->dict[size_t(k)].second->i, k * 7);
    }
}

TEST(PickleWrite, ValuesItCannotWriteAreNamedByTheirKey) {
    std::vector<torch::Tensor> storages;
    auto list_inside = dict_new();
    auto model = dict_new();
    model.insert("sizes", c10::List<int64_t>({1, 2}));
    list_inside.insert("model", model);
    std::string e = error_of([&] { pickle_value(list_inside, storages); });
    EXPECT_NE(e.find("'model.sizes': cannot write a value of type"), std::string::npos) << e;

    auto int_keys = c10::impl::GenericDict(c10::IntType::get(), c10::AnyType::get());
    int_keys.insert(int64_t(1), int64_t(2));
    auto outer = dict_new();
    outer.insert("state", int_keys);
    e = error_of([&] { pickle_value(outer, storages); });
    EXPECT_NE(e.find("'state': dict keys must be strings"), std::string::npos) << e;

    auto undefined = dict_new();
    undefined.insert("t", torch::Tensor());
    e = error_of([&] { pickle_value(undefined, storages); });
    EXPECT_NE(e.find("'t': tensor is undefined"), std::string::npos) << e;

    auto sparse = dict_new();
    sparse.insert("s", torch::eye(3).to_sparse());
    e = error_of([&] { pickle_value(sparse, storages); });
    EXPECT_NE(e.find("'s': tensor is not dense"), std::string::npos) << e;

    auto quantized = dict_new();  // a dtype torch.save has no legacy storage class for
    quantized.insert("q", torch::quantize_per_tensor(torch::ones({2}), 0.1, 0, torch::kQInt8));
    e = error_of([&] { pickle_value(quantized, storages); });
    EXPECT_NE(e.find("cannot save dtype"), std::string::npos) << e;

    e = error_of([&] { pickle_value(c10::IValue(c10::List<double>({1.0})), storages); });
    EXPECT_NE(e.find("'<root>': cannot write"), std::string::npos) << e;
}
