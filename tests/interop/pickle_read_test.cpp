// The unpickler of torch.save files, on its own: pickles Python's pickle module wrote (protocols
// 2, 3 and 4), tensors rebuilt over shared storages, and programs cut short or spoiled, each
// refused with its reason.
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "../../src/interop/pickle_read.h"
#include "test_support.h"

using namespace ips::detail;
using ips::test::error_of;

namespace {

std::string unhex(const std::string& hex) {
    std::string out;
    for (size_t k = 0; k + 1 < hex.size(); k += 2) out.push_back(char(std::stoi(hex.substr(k, 2), nullptr, 16)));
    return out;
}

// Python 3.11: pickle.dumps(obj, protocol=P) of
//   l = [1, 2, 3]
//   obj = {'a': 1, 'neg': -5, 'big': 2**40, 'f': 1.5, 's': 'héllo', 'b': True, 'n': None, 'l': l,
//          't': (4, 5), 'bytes': b'\x00\xff', 'nested': {'x': []}, 'set': {7}, 'again': l}
const std::map<int, std::string> kPythonPickles = {
    {2, "80027d71002858010000006171014b0158030000006e656771024afbffffff580300000062696771038a0600000000000158"
        "01000000667104473ff80000000000005801000000737105580600000068c3a96c6c6f710658010000006271078858010000"
        "006e71084e58010000006c71095d710a284b014b024b0365580100000074710b4b044b0586710c5805000000627974657371"
        "0d635f636f646563730a656e636f64650a710e580300000000c3bf710f58060000006c6174696e3171108671115271125806"
        "0000006e657374656471137d711458010000007871155d71167358030000007365747117635f5f6275696c74696e5f5f0a73"
        "65740a71185d71194b076185711a52711b5805000000616761696e711c680a752e"},
    {3, "80037d71002858010000006171014b0158030000006e656771024afbffffff580300000062696771038a0600000000000158"
        "01000000667104473ff80000000000005801000000737105580600000068c3a96c6c6f710658010000006271078858010000"
        "006e71084e58010000006c71095d710a284b014b024b0365580100000074710b4b044b0586710c5805000000627974657371"
        "0d430200ff710e58060000006e6573746564710f7d711058010000007871115d71127358030000007365747113636275696c"
        "74696e730a7365740a71145d71154b07618571165271175805000000616761696e7118680a752e"},
    {4, "80049595000000000000007d94288c0161944b018c036e6567944afbffffff8c03626967948a060000000000018c01669447"
        "3ff80000000000008c0173948c0668c3a96c6c6f948c016294888c016e944e8c016c945d94284b014b024b03658c0174944b"
        "044b0586948c05627974657394430200ff948c066e6573746564947d948c0178945d94738c03736574948f94284b07908c05"
        "616761696e94680a752e"},
};

// A loader for programs without tensors: any call is a failure.
torch::Tensor no_storage(const std::string& key, torch::ScalarType, int64_t) {
    throw std::runtime_error("unexpected storage '" + key + "'");
}

PyRef item(const PyRef& dict, const std::string& key) {
    for (const auto& [k, v] : dict->dict)
        if (k->kind == PyKind::str && k->s == key) return v;
    ADD_FAILURE() << "no key '" << key << "'";
    return std::make_shared<PyValue>();
}

// Pickle programs by hand, opcode by opcode.
struct Program {
    std::string b = std::string("\x80\x02", 2);  // PROTO 2
    Program& op(char c) { return b.push_back(c), *this; }
    Program& raw(const std::string& s) { return b += s, *this; }
    Program& str(const std::string& s) {
        b.push_back('X');
        for (int k = 0; k < 4; ++k) b.push_back(char((s.size() >> (8 * k)) & 0xFF));
        return raw(s);
    }
    Program& small(int v) { return op('K').op(char(v)); }
    Program& global(const std::string& module, const std::string& name) { return op('c').raw(module + "\n" + name + "\n"); }
    // _rebuild_tensor_v2(storage KEY of NUMEL floats, offset, sizes, strides, False, OrderedDict())
    Program& tensor(const std::string& key, int numel, int offset, std::vector<int> sizes, std::vector<int> strides) {
        global("torch._utils", "_rebuild_tensor_v2").op('(');
        op('(').str("storage").global("torch", "FloatStorage").str(key).str("cpu").small(numel).op('t').op('Q');
        small(offset);
        op('(');
        for (int s : sizes) small(s);
        op('t').op('(');
        for (int s : strides) small(s);
        op('t').op('\x89');
        global("collections", "OrderedDict").op(')').op('R');
        return op('t').op('R');
    }
    std::string done() const { return b + "."; }
};

}  // namespace

TEST(PickleRead, ReadsWhatPythonsPicklerWrites) {
    for (const auto& [protocol, hex] : kPythonPickles) {
        SCOPED_TRACE("protocol " + std::to_string(protocol));
        const PyRef root = pickle_load(unhex(hex), no_storage);
        ASSERT_EQ(root->kind, PyKind::dict);
        std::vector<std::string> keys;
        for (const auto& [k, v] : root->dict) keys.push_back(k->s);
        EXPECT_EQ(keys, (std::vector<std::string>{"a", "neg", "big", "f", "s", "b", "n", "l", "t", "bytes", "nested",
                                                  "set", "again"}));
        EXPECT_EQ(item(root, "a")->kind, PyKind::integer);
        EXPECT_EQ(item(root, "a")->i, 1);
        EXPECT_EQ(item(root, "neg")->i, -5);
        EXPECT_EQ(item(root, "big")->i, int64_t(1) << 40);
        EXPECT_EQ(item(root, "f")->kind, PyKind::floating);
        EXPECT_EQ(item(root, "f")->f, 1.5);
        EXPECT_EQ(item(root, "s")->kind, PyKind::str);
        EXPECT_EQ(item(root, "s")->s, "h\xC3\xA9llo");  // UTF-8
        EXPECT_EQ(item(root, "b")->kind, PyKind::boolean);
        EXPECT_TRUE(item(root, "b")->b);
        EXPECT_EQ(item(root, "n")->kind, PyKind::none);
        const PyRef l = item(root, "l");
        ASSERT_EQ(l->kind, PyKind::list);
        ASSERT_EQ(l->items.size(), 3u);
        EXPECT_EQ(l->items[2]->i, 3);
        const PyRef t = item(root, "t");
        ASSERT_EQ(t->kind, PyKind::tuple);
        ASSERT_EQ(t->items.size(), 2u);
        EXPECT_EQ(t->items[1]->i, 5);
        // Protocol 2 writes bytes as _codecs.encode(text, 'latin1'); 3 and 4 as raw bytes.
        EXPECT_EQ(item(root, "bytes")->kind, PyKind::bytes);
        EXPECT_EQ(item(root, "bytes")->s, std::string("\x00\xff", 2));
        const PyRef nested = item(root, "nested");
        ASSERT_EQ(nested->kind, PyKind::dict);
        ASSERT_EQ(nested->dict.size(), 1u);
        EXPECT_EQ(nested->dict[0].second->kind, PyKind::list);
        EXPECT_TRUE(nested->dict[0].second->items.empty());
        const PyRef set = item(root, "set");  // kept as a list
        ASSERT_EQ(set->kind, PyKind::list);
        ASSERT_EQ(set->items.size(), 1u);
        EXPECT_EQ(set->items[0]->i, 7);
        // The memo hands back the very same object.
        EXPECT_EQ(item(root, "again").get(), l.get());
    }
}

TEST(PickleRead, TensorsShareTheirStorageAndKeepTheirView) {
    int loads = 0;
    auto loader = [&](const std::string& key, torch::ScalarType dtype, int64_t numel) {
        ++loads;
        EXPECT_EQ(key, "0");
        EXPECT_EQ(dtype, torch::kFloat);
        return torch::arange(numel, torch::kFloat);
    };
    Program p;
    p.op('}').op('(');
    p.str("whole").tensor("0", 6, 0, {2, 3}, {3, 1});
    p.str("column").tensor("0", 6, 1, {2}, {3});
    p.op('u');
    const PyRef root = pickle_load(p.done(), loader);
    EXPECT_EQ(loads, 1);  // one storage, loaded once
    const torch::Tensor whole = item(root, "whole")->tensor, column = item(root, "column")->tensor;
    EXPECT_TRUE(torch::equal(whole, torch::arange(6, torch::kFloat).view({2, 3})));
    EXPECT_TRUE(torch::equal(column, torch::tensor({1.f, 4.f})));
    EXPECT_EQ(column.storage_offset(), 1);
    EXPECT_EQ(column.stride(0), 3);
    whole.fill_(9);  // a write through one view shows in the other, as in Python
    EXPECT_TRUE(torch::equal(column, torch::tensor({9.f, 9.f})));

    // A view reaching past its storage is refused, not read out of bounds.
    Program past;
    past.tensor("0", 6, 5, {2}, {3});
    const std::string e = error_of([&] { pickle_load(past.done(), loader); });
    EXPECT_NE(e.find("reaches past the end of its storage (6 elements)"), std::string::npos) << e;
}

TEST(PickleRead, TruncatedProgramsAreRefused) {
    // Every proper prefix of a real program, Python's and one with tensors, fails as truncated.
    Program p;
    p.op('}').op('(').str("w").tensor("0", 4, 0, {2, 2}, {2, 1}).op('u');
    auto loader = [](const std::string&, torch::ScalarType, int64_t n) { return torch::zeros({n}); };
    for (const std::string& whole : {unhex(kPythonPickles.at(2)), unhex(kPythonPickles.at(4)), p.done()}) {
        ASSERT_EQ(pickle_load(whole, loader)->kind, PyKind::dict);
        for (size_t n = 0; n < whole.size(); ++n) {
            const std::string e = error_of([&] { pickle_load(whole.substr(0, n), loader); });
            EXPECT_NE(e.find("truncated pickle"), std::string::npos) << "prefix of " << n << " bytes: " << e;
        }
    }
    Program cut;
    cut.op('X').raw(std::string("\x10\x00\x00\x00", 4)).raw("abc");  // 16 bytes announced, 3 there
    const std::string e = error_of([&] { pickle_load(cut.b, no_storage); });
    EXPECT_NE(e.find("truncated pickle: 16 bytes wanted at offset 7, 3 left"), std::string::npos) << e;
}

// Moved from torch_file_test.cpp (spoiled data.pkl records), now on the program itself.
TEST(PickleRead, CorruptProgramsNameTheReasonAndTheOffset) {
    Program good;
    good.op('}').op('(').str("w").tensor("0", 4, 0, {2, 2}, {2, 1}).op('u');
    auto loader = [](const std::string&, torch::ScalarType, int64_t n) { return torch::zeros({n}); };
    std::string global = good.done();
    global.replace(global.find("collections\nOrderedDict"), 23, "posix\nsystem");
    struct Case {
        std::string program, why;
    };
    Program text_persid;
    text_persid.op('(').str("storage").global("torch", "FloatStorage").str("0").str("cpu").small(4).op('t').raw("P0\n");
    const std::vector<Case> cases = {
        {Program().op('}').op('\xff').done(), "data.pkl offset 3 (opcode 0xff): unknown or unsupported opcode"},
        {global, "unsupported global 'posix.system'"},
        {Program().op('R').done(), "stack underflow"},
        {Program().done(), "STOP with an empty stack"},
        {Program().op('h').op(5).done(), "memo entry 5 was never stored"},
        {Program().op('}').op('(').small(1).op('u').done(), "odd number of items for a dict"},
        {Program().small(1).small(2).op('u').done(), "no MARK on the stack"},
        {Program().small(1).small(2).op('a').done(), "APPEND: expected list, got int"},
        {Program().small(1).small(2).op('R').done(), "call: expected global, got int"},
        {text_persid.done(), "text persistent ids are not written by torch.save"},
    };
    for (const auto& c : cases) {
        const std::string e = error_of([&] { pickle_load(c.program, loader); });
        EXPECT_NE(e.find(c.why), std::string::npos) << c.why << "\ngot: " << e;
    }
}

// A dict put inside itself (`}2` `2` `s`: EMPTY_DICT, DUP, DUP, SETITEM) is read, and freed with
// its root (it was a shared_ptr cycle, leaked on every load; found by fuzz/torch_pickle.cpp).
TEST(PickleRead, AContainerInsideItselfIsFreedWithTheRoot) {
    std::weak_ptr<PyValue> inner;
    {
        const PyRef root = pickle_load(std::string("\x80\x02}22s.", 7), no_storage);
        ASSERT_EQ(root->kind, PyKind::dict);
        ASSERT_EQ(root->dict.size(), 1u);
        EXPECT_EQ(root->dict[0].second.get(), root.get());
        inner = root->dict[0].second;
        EXPECT_FALSE(inner.expired());
    }
    EXPECT_TRUE(inner.expired());
}

TEST(PickleRead, StorageClassNamesAreOnesTheReaderKnows) {
    EXPECT_STREQ(storage_class_name(torch::kFloat), "FloatStorage");
    EXPECT_STREQ(storage_class_name(torch::kHalf), "HalfStorage");
    EXPECT_STREQ(storage_class_name(torch::kBFloat16), "BFloat16Storage");
    EXPECT_STREQ(storage_class_name(torch::kLong), "LongStorage");
    EXPECT_STREQ(storage_class_name(torch::kBool), "BoolStorage");
    EXPECT_STREQ(storage_class_name(torch::kByte), "ByteStorage");  // not UntypedStorage
    EXPECT_STREQ(storage_class_name(torch::kChar), "CharStorage");
    const std::string e = error_of([] { storage_class_name(torch::kQInt8); });
    EXPECT_NE(e.find("cannot save dtype"), std::string::npos) << e;
    // Each name resolves back to its dtype through a program's persistent id.
    for (auto dtype : {torch::kFloat, torch::kDouble, torch::kHalf, torch::kLong, torch::kInt, torch::kBool}) {
        Program p;
        p.op('(').str("storage").global("torch", storage_class_name(dtype)).str("0").str("cpu").small(3).op('t').op('Q');
        torch::ScalarType seen = torch::kQInt8;
        pickle_load(p.done(), [&](const std::string&, torch::ScalarType d, int64_t n) {
            seen = d;
            return torch::zeros({n}, d);
        });
        EXPECT_EQ(seen, dtype) << storage_class_name(dtype);
    }
}
