// A pickle interpreter limited to what torch.save writes (protocol 2, plus the protocol 4
// opcodes a pickle_protocol=4 save adds). Globals are resolved against a fixed list, so a file
// can rebuild tensors and containers but never run code.
#include "pickle_read.h"

#include <algorithm>
#include <cstring>
#include <sstream>
#include <stdexcept>
#include <unordered_map>

#include "pickle_opcodes.h"

namespace ips::detail {
namespace {

[[noreturn]] void fail(const std::string& msg) { throw std::runtime_error(msg); }

// Every value one pickle_load makes. A pickle can put a container inside itself (through the
// memo), a shared_ptr cycle that would never be freed (found by fuzz/torch_pickle.cpp): the arena
// owns every value and empties the containers when the last reference to the result goes.
struct Arena {
    std::vector<PyRef> values;
    ~Arena() {
        for (auto& v : values) {
            v->items.clear();
            v->dict.clear();
        }
    }
};
thread_local Arena* t_arena = nullptr;

PyRef make(PyKind kind) {
    auto v = std::make_shared<PyValue>();
    v->kind = kind;
    if (t_arena) t_arena->values.push_back(v);
    return v;
}

PyRef make_int(int64_t i) {
    auto v = make(PyKind::integer);
    v->i = i;
    return v;
}

PyRef make_text(PyKind kind, std::string s) {
    auto v = make(kind);
    v->s = std::move(s);
    return v;
}

const char* kind_name(PyKind kind) {
    switch (kind) {
        case PyKind::none: return "None";
        case PyKind::boolean: return "bool";
        case PyKind::integer: return "int";
        case PyKind::floating: return "float";
        case PyKind::str: return "str";
        case PyKind::bytes: return "bytes";
        case PyKind::tuple: return "tuple";
        case PyKind::list: return "list";
        case PyKind::dict: return "dict";
        case PyKind::global: return "global";
        case PyKind::storage: return "storage";
        case PyKind::tensor: return "tensor";
    }
    return "?";
}

struct StorageType {
    const char* name;
    torch::ScalarType dtype;
};

// torch.save names a storage by its legacy typed class; the first entry per dtype is what we write.
const StorageType kStorageTypes[] = {
    {"FloatStorage", torch::kFloat},          {"DoubleStorage", torch::kDouble},
    {"HalfStorage", torch::kHalf},            {"BFloat16Storage", torch::kBFloat16},
    {"LongStorage", torch::kLong},            {"IntStorage", torch::kInt},
    {"ShortStorage", torch::kShort},          {"CharStorage", torch::kChar},
    {"ByteStorage", torch::kByte},            {"BoolStorage", torch::kBool},
    {"ComplexFloatStorage", torch::kComplexFloat}, {"ComplexDoubleStorage", torch::kComplexDouble},
    {"UntypedStorage", torch::kByte},
};

const StorageType* storage_type_find(const std::string& global_name) {
    const std::string prefix = "torch.";
    if (global_name.compare(0, prefix.size(), prefix) != 0) return nullptr;
    for (const auto& st : kStorageTypes)
        if (global_name.compare(prefix.size(), std::string::npos, st.name) == 0) return &st;
    return nullptr;
}

// Everything else a state dict (or a training checkpoint of plain values around it) needs.
const char* const kGlobals[] = {
    "collections.OrderedDict",
    "torch._utils._rebuild_tensor_v2",
    "torch._utils._rebuild_parameter",
    "torch._utils._rebuild_parameter_with_state",
    "torch._tensor._rebuild_from_type_v2",
    "torch.Tensor",
    "torch.nn.parameter.Parameter",
    "torch.Size",
    "_codecs.encode",
    "builtins.set",
    "builtins.frozenset",
    "__builtin__.set",
};

class Unpickler {
public:
    Unpickler(const std::string& data, const StorageLoader& loader) : d_(data), loader_(loader) {}

    PyRef run() {
        while (true) {
            op_pos_ = pos_;
            const uint8_t op = u8();
            try {
                if (op == uint8_t(Op::STOP)) {
                    if (stack_.empty()) fail("STOP with an empty stack");
                    return stack_.back();
                }
                step(op);
            } catch (const std::exception& e) {
                std::ostringstream msg;
                msg << "data.pkl offset " << op_pos_ << " (opcode 0x" << std::hex << int(op) << "): "
                    << e.what();
                throw std::runtime_error(msg.str());
            }
        }
    }

private:
    const std::string& d_;
    const StorageLoader& loader_;
    size_t pos_ = 0, op_pos_ = 0;
    std::vector<PyRef> stack_;
    std::vector<size_t> marks_;
    std::unordered_map<uint64_t, PyRef> memo_;
    std::unordered_map<std::string, PyRef> storages_;

    const char* take(uint64_t n) {
        if (n > d_.size() - pos_) {
            std::ostringstream msg;
            msg << "truncated pickle: " << n << " bytes wanted at offset " << pos_ << ", "
                << d_.size() - pos_ << " left";
            fail(msg.str());
        }
        const char* p = d_.data() + pos_;
        pos_ += n;
        return p;
    }
    uint64_t uint_le(int n) {
        const auto* p = reinterpret_cast<const uint8_t*>(take(n));
        uint64_t v = 0;
        for (int k = n - 1; k >= 0; --k) v = (v << 8) | p[k];
        return v;
    }
    uint8_t u8() { return static_cast<uint8_t>(uint_le(1)); }
    std::string line() {
        const size_t end = d_.find('\n', pos_);
        if (end == std::string::npos) fail("truncated pickle: unterminated text argument");
        std::string s = d_.substr(pos_, end - pos_);
        pos_ = end + 1;
        return s;
    }
    std::string text(uint64_t n) { return std::string(take(n), n); }

    void push(PyRef v) { stack_.push_back(std::move(v)); }
    PyRef pop() {
        if (stack_.empty() || (!marks_.empty() && stack_.size() <= marks_.back()))
            fail("stack underflow");
        PyRef v = std::move(stack_.back());
        stack_.pop_back();
        return v;
    }
    PyRef& top() {
        if (stack_.empty()) fail("stack underflow");
        return stack_.back();
    }
    std::vector<PyRef> pop_mark() {
        if (marks_.empty()) fail("no MARK on the stack");
        const size_t m = marks_.back();
        marks_.pop_back();
        std::vector<PyRef> items(stack_.begin() + m, stack_.end());
        stack_.resize(m);
        return items;
    }
    PyRef& expect(PyRef& v, PyKind kind, const char* what) {
        if (v->kind != kind)
            fail(std::string(what) + ": expected " + kind_name(kind) + ", got " + kind_name(v->kind));
        return v;
    }
    void memo_put(uint64_t idx) { memo_[idx] = top(); }
    void memo_get(uint64_t idx) {
        auto it = memo_.find(idx);
        if (it == memo_.end()) fail("memo entry " + std::to_string(idx) + " was never stored");
        push(it->second);
    }

    PyRef tuple_of(std::vector<PyRef> items) {
        auto v = make(PyKind::tuple);
        v->items = std::move(items);
        return v;
    }

    // Python long as little-endian two's complement of n bytes.
    PyRef long_of(uint64_t n) {
        if (n > 8) fail("integer of " + std::to_string(n) + " bytes does not fit 64 bits");
        const auto* p = reinterpret_cast<const uint8_t*>(take(n));
        uint64_t v = 0;
        for (int k = int(n) - 1; k >= 0; --k) v = (v << 8) | p[k];
        if (n > 0 && n < 8 && (p[n - 1] & 0x80)) v |= ~uint64_t(0) << (8 * n);
        return make_int(static_cast<int64_t>(v));
    }

    PyRef global(const std::string& module, const std::string& name) {
        const std::string full = module + "." + name;
        bool known = storage_type_find(full) != nullptr;
        for (const char* g : kGlobals) known = known || full == g;
        if (!known) fail("unsupported global '" + full + "' (not part of a tensor state dict)");
        return make_text(PyKind::global, full);
    }

    // INT also carries protocol 0's booleans ("I00\n", "I01\n"); LONG may end in 'L'.
    PyRef int_from_line(Op op) {
        std::string s = line();
        if (op == Op::INT && (s == "00" || s == "01")) {
            auto v = make(PyKind::boolean);
            v->b = s == "01";
            return v;
        }
        if (!s.empty() && s.back() == 'L') s.pop_back();
        try {
            size_t used = 0;
            const long long i = std::stoll(s, &used);
            if (used != s.size()) throw std::invalid_argument(s);
            return make_int(i);
        } catch (const std::exception&) {
            fail("bad integer literal '" + s + "'");
        }
    }

    PyRef float_from_be64() {
        const auto* p = reinterpret_cast<const uint8_t*>(take(8));
        uint64_t bits = 0;
        for (int k = 0; k < 8; ++k) bits = (bits << 8) | p[k];  // big-endian
        auto v = make(PyKind::floating);
        std::memcpy(&v->f, &bits, 8);
        return v;
    }

    // One case per opcode, as the pickle format lists them, reads best as one switch; the longer
    // cases call helpers above.
    void step(uint8_t byte) {
        const Op op = static_cast<Op>(byte);
        switch (op) {
            case Op::PROTO: u8(); break;
            case Op::FRAME: take(8); break;  // framing is irrelevant in memory
            case Op::MARK: marks_.push_back(stack_.size()); break;
            case Op::POP: pop(); break;
            case Op::POP_MARK: pop_mark(); break;
            case Op::DUP: push(top()); break;
            case Op::NONE: push(make(PyKind::none)); break;
            case Op::NEWTRUE: case Op::NEWFALSE: {
                auto v = make(PyKind::boolean);
                v->b = op == Op::NEWTRUE;
                push(v);
                break;
            }
            case Op::INT: case Op::LONG: push(int_from_line(op)); break;
            case Op::BININT: push(make_int(static_cast<int32_t>(uint_le(4)))); break;
            case Op::BININT1: push(make_int(uint_le(1))); break;
            case Op::BININT2: push(make_int(uint_le(2))); break;
            case Op::LONG1: push(long_of(uint_le(1))); break;
            case Op::LONG4: push(long_of(uint_le(4))); break;
            case Op::FLOAT: {
                auto v = make(PyKind::floating);
                v->f = std::strtod(line().c_str(), nullptr);
                push(v);
                break;
            }
            case Op::BINFLOAT: push(float_from_be64()); break;
            case Op::BINUNICODE: push(make_text(PyKind::str, text(uint_le(4)))); break;
            case Op::SHORT_BINUNICODE: push(make_text(PyKind::str, text(uint_le(1)))); break;
            case Op::BINUNICODE8: push(make_text(PyKind::str, text(uint_le(8)))); break;
            case Op::BINSTRING: push(make_text(PyKind::str, text(uint_le(4)))); break;
            case Op::SHORT_BINSTRING: push(make_text(PyKind::str, text(uint_le(1)))); break;
            case Op::BINBYTES: push(make_text(PyKind::bytes, text(uint_le(4)))); break;
            case Op::SHORT_BINBYTES: push(make_text(PyKind::bytes, text(uint_le(1)))); break;
            case Op::BINBYTES8: case Op::BYTEARRAY8: push(make_text(PyKind::bytes, text(uint_le(8)))); break;
            case Op::EMPTY_TUPLE: push(make(PyKind::tuple)); break;
            case Op::TUPLE: push(tuple_of(pop_mark())); break;
            case Op::TUPLE1: case Op::TUPLE2: case Op::TUPLE3: {
                std::vector<PyRef> items(byte - uint8_t(Op::TUPLE1) + 1);
                for (auto it = items.rbegin(); it != items.rend(); ++it) *it = pop();
                push(tuple_of(std::move(items)));
                break;
            }
            case Op::EMPTY_LIST: case Op::EMPTY_SET: push(make(PyKind::list)); break;  // a set is kept as a list
            case Op::LIST: case Op::FROZENSET: {
                auto v = make(PyKind::list);
                v->items = pop_mark();
                push(v);
                break;
            }
            case Op::APPEND: {
                PyRef item = pop();
                expect(top(), PyKind::list, "APPEND")->items.push_back(std::move(item));
                break;
            }
            case Op::APPENDS: case Op::ADDITEMS: {
                std::vector<PyRef> items = pop_mark();
                auto& list = expect(top(), PyKind::list, "APPENDS")->items;
                list.insert(list.end(), items.begin(), items.end());
                break;
            }
            case Op::EMPTY_DICT: push(make(PyKind::dict)); break;
            case Op::DICT: case Op::SETITEMS: {
                std::vector<PyRef> items = pop_mark();
                if (items.size() % 2) fail("odd number of items for a dict");
                PyRef d = op == Op::DICT ? make(PyKind::dict) : top();
                expect(d, PyKind::dict, "SETITEMS");
                for (size_t k = 0; k < items.size(); k += 2) d->dict.emplace_back(items[k], items[k + 1]);
                if (op == Op::DICT) push(d);
                break;
            }
            case Op::SETITEM: {
                PyRef value = pop();
                PyRef key = pop();
                expect(top(), PyKind::dict, "SETITEM")->dict.emplace_back(key, value);
                break;
            }
            case Op::PUT: memo_put(std::stoull("0" + line())); break;
            case Op::BINPUT: memo_put(uint_le(1)); break;
            case Op::LONG_BINPUT: memo_put(uint_le(4)); break;
            case Op::MEMOIZE: memo_put(memo_.size()); break;
            case Op::GET: memo_get(std::stoull("0" + line())); break;
            case Op::BINGET: memo_get(uint_le(1)); break;
            case Op::LONG_BINGET: memo_get(uint_le(4)); break;
            case Op::GLOBAL: {
                const std::string module = line();
                push(global(module, line()));
                break;
            }
            case Op::STACK_GLOBAL: {
                PyRef name = pop();
                PyRef module = pop();
                push(global(expect(module, PyKind::str, "STACK_GLOBAL")->s,
                            expect(name, PyKind::str, "STACK_GLOBAL")->s));
                break;
            }
            case Op::REDUCE: case Op::NEWOBJ: {  // for our globals both mean "call"
                PyRef args = pop();
                PyRef fn = pop();
                push(call(fn, args));
                break;
            }
            case Op::NEWOBJ_EX: {
                PyRef kwargs = pop();
                PyRef args = pop();
                PyRef cls = pop();
                if (kwargs->kind != PyKind::dict || !kwargs->dict.empty()) fail("NEWOBJ_EX with keyword arguments");
                push(call(cls, args));
                break;
            }
            case Op::BUILD: {
                // State of an OrderedDict (its _metadata) or of a Parameter: not needed for tensors.
                pop();
                top();
                break;
            }
            case Op::BINPERSID: push(persistent_load(pop())); break;
            case Op::PERSID: fail("text persistent ids are not written by torch.save");
            default: fail("unknown or unsupported opcode");
        }
    }

    PyRef call(PyRef& fn, PyRef& args) {
        expect(fn, PyKind::global, "call");
        expect(args, PyKind::tuple, "call arguments");
        const std::string& name = fn->s;
        const auto& a = args->items;
        if (name == "collections.OrderedDict") {
            auto d = make(PyKind::dict);
            if (a.size() == 1 && a[0]->kind == PyKind::list) {
                for (auto& pair : a[0]->items) {
                    if (pair->kind != PyKind::tuple || pair->items.size() != 2) fail("OrderedDict item is not a pair");
                    d->dict.emplace_back(pair->items[0], pair->items[1]);
                }
            } else if (!a.empty()) {
                fail("OrderedDict called with unsupported arguments");
            }
            return d;
        }
        if (name == "torch._utils._rebuild_tensor_v2") return rebuild_tensor(a);
        if (name == "torch._utils._rebuild_parameter" || name == "torch._utils._rebuild_parameter_with_state") {
            if (a.empty() || a[0]->kind != PyKind::tensor) fail(name + " without a tensor");
            return a[0];  // requires_grad and hooks mean nothing for loading values
        }
        if (name == "torch._tensor._rebuild_from_type_v2") {
            if (a.size() < 3) fail(name + " with too few arguments");
            PyRef inner_fn = a[0], inner_args = a[2];
            return call(inner_fn, inner_args);
        }
        if (name == "torch.Size") {
            if (a.size() != 1 || a[0]->kind != PyKind::tuple) fail("torch.Size without a tuple");
            return a[0];
        }
        if (name == "_codecs.encode") return bytes_from_latin1(a);
        if (name == "builtins.set" || name == "builtins.frozenset" || name == "__builtin__.set") {
            auto v = make(PyKind::list);
            if (a.size() == 1 && (a[0]->kind == PyKind::list || a[0]->kind == PyKind::tuple)) v->items = a[0]->items;
            else if (!a.empty()) fail("set called with unsupported arguments");
            return v;
        }
        fail("'" + name + "' is not callable here");
    }

    // Protocol 2 writes Python 3 bytes as _codecs.encode(text, 'latin1').
    PyRef bytes_from_latin1(const std::vector<PyRef>& a) {
        if (a.size() != 2 || a[0]->kind != PyKind::str || a[1]->kind != PyKind::str ||
            (a[1]->s != "latin1" && a[1]->s != "latin-1"))
            fail("_codecs.encode with unsupported arguments");
        std::string out;
        const std::string& s = a[0]->s;
        for (size_t k = 0; k < s.size(); ++k) {
            const auto c = static_cast<uint8_t>(s[k]);
            if (c < 0x80) {
                out.push_back(char(c));
            } else if ((c & 0xE0) == 0xC0 && k + 1 < s.size()) {
                out.push_back(char(((c & 0x03) << 6) | (static_cast<uint8_t>(s[++k]) & 0x3F)));
            } else {
                fail("_codecs.encode: text is not latin-1");
            }
        }
        return make_text(PyKind::bytes, out);
    }

    PyRef persistent_load(const PyRef& pid) {
        if (pid->kind != PyKind::tuple || pid->items.size() != 5 || pid->items[0]->kind != PyKind::str ||
            pid->items[0]->s != "storage")
            fail("persistent id is not a ('storage', type, key, location, numel) tuple");
        const auto& it = pid->items;
        if (it[1]->kind != PyKind::global || it[2]->kind != PyKind::str || it[4]->kind != PyKind::integer)
            fail("malformed storage persistent id");
        const StorageType* st = storage_type_find(it[1]->s);
        if (!st) fail("unsupported storage type '" + it[1]->s + "'");
        if (it[4]->i < 0) fail("negative storage size");
        auto found = storages_.find(it[2]->s);
        if (found != storages_.end()) return found->second;
        auto v = make(PyKind::storage);
        v->tensor = loader_(it[2]->s, st->dtype, it[4]->i);
        storages_[it[2]->s] = v;
        return v;
    }

    std::vector<int64_t> int_tuple(const PyRef& v, const char* what) {
        if (v->kind != PyKind::tuple) fail(std::string(what) + " is not a tuple");
        std::vector<int64_t> out;
        for (const auto& x : v->items) {
            if (x->kind != PyKind::integer || x->i < 0) fail(std::string(what) + " holds a non-integer or negative value");
            out.push_back(x->i);
        }
        return out;
    }

    // _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
    PyRef rebuild_tensor(const std::vector<PyRef>& a) {
        if (a.size() < 4) fail("_rebuild_tensor_v2 with too few arguments");
        if (a[0]->kind != PyKind::storage || a[1]->kind != PyKind::integer) fail("_rebuild_tensor_v2: bad storage or offset");
        const torch::Tensor& storage = a[0]->tensor;
        const int64_t offset = a[1]->i;
        const auto sizes = int_tuple(a[2], "tensor size");
        const auto strides = int_tuple(a[3], "tensor stride");
        if (sizes.size() != strides.size()) fail("tensor size and stride differ in length");
        int64_t last = offset;  // index of the last element the view touches
        bool empty = false, overflow = false;
        for (size_t k = 0; k < sizes.size(); ++k) {
            empty = empty || sizes[k] == 0;
            int64_t reach = 0;
            overflow = overflow || __builtin_mul_overflow(std::max<int64_t>(sizes[k] - 1, 0), strides[k], &reach) ||
                       __builtin_add_overflow(last, reach, &last);
        }
        if (offset < 0 || overflow || (!empty && last >= storage.numel()) || (empty && offset > storage.numel()))
            fail("tensor view reaches past the end of its storage (" + std::to_string(storage.numel()) + " elements)");
        auto t = torch::empty({0}, storage.options());
        t.set_(storage.storage(), offset, sizes, strides);
        auto v = make(PyKind::tensor);
        v->tensor = t;
        return v;
    }
};

}  // namespace

PyRef pickle_load(const std::string& data, const StorageLoader& load_storage) {
    auto arena = std::make_shared<Arena>();
    struct Scope {
        Arena* saved;
        ~Scope() { t_arena = saved; }
    } scope{t_arena};
    t_arena = arena.get();
    const PyRef root = Unpickler(data, load_storage).run();
    // The result keeps the arena alive (an aliasing pointer): the tree lives as long as its root.
    return PyRef(arena, root.get());
}

const char* storage_class_name(torch::ScalarType dtype) {
    for (const auto& st : kStorageTypes)
        if (st.dtype == dtype) return st.name;
    fail(std::string("cannot save dtype ") + c10::toString(dtype));
}

}  // namespace ips::detail
