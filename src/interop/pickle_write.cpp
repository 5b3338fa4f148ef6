// The pickler half of torch.save: protocol 2, as Python's pickler writes it for a state dict
// or a training checkpoint of plain values around one.
#include "pickle_write.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "pickle_opcodes.h"
#include "pickle_read.h"  // storage_class_name

namespace ips::detail {
namespace {

class Pickler {
public:
    std::string out;
    std::vector<torch::Tensor>& storages;

    explicit Pickler(std::vector<torch::Tensor>& s) : storages(s) {}

    void op(Op o) { out.push_back(char(o)); }
    void byte(uint8_t c) { out.push_back(char(c)); }
    void u32(uint32_t v) {
        for (int k = 0; k < 4; ++k) out.push_back(char((v >> (8 * k)) & 0xFF));
    }
    void str(const std::string& s) {
        op(Op::BINUNICODE);  // Python reads it as UTF-8
        u32(static_cast<uint32_t>(s.size()));
        out += s;
    }
    void integer(int64_t v) {
        if (v >= 0 && v < 256) {
            op(Op::BININT1);
            byte(uint8_t(v));
        } else if (v >= 0 && v < 65536) {
            op(Op::BININT2);
            byte(uint8_t(v & 0xFF));
            byte(uint8_t(v >> 8));
        } else if (v >= INT32_MIN && v <= INT32_MAX) {
            op(Op::BININT);
            u32(static_cast<uint32_t>(static_cast<int32_t>(v)));
        } else {
            op(Op::LONG1);  // 8 bytes little-endian two's complement
            byte(8);
            for (int k = 0; k < 8; ++k) byte(uint8_t((static_cast<uint64_t>(v) >> (8 * k)) & 0xFF));
        }
    }
    void floating(double v) {
        op(Op::BINFLOAT);  // big-endian IEEE 754
        uint64_t bits;
        std::memcpy(&bits, &v, sizeof bits);
        for (int k = 7; k >= 0; --k) byte(uint8_t((bits >> (8 * k)) & 0xFF));
    }
    void global(const char* module, const char* name) {
        op(Op::GLOBAL);
        out += module;
        out += '\n';
        out += name;
        out += '\n';
    }
    void int_tuple(const std::vector<int64_t>& v) {
        if (v.empty()) return op(Op::EMPTY_TUPLE);
        if (v.size() > 3) op(Op::MARK);
        for (int64_t x : v) integer(x);
        // TUPLE1..TUPLE3 are consecutive opcodes.
        op(v.size() > 3 ? Op::TUPLE : static_cast<Op>(uint8_t(Op::TUPLE1) + v.size() - 1));
    }
    void empty_ordered_dict() {
        global("collections", "OrderedDict");
        op(Op::EMPTY_TUPLE);
        op(Op::REDUCE);
    }

    void tensor(const torch::Tensor& t) {
        const torch::Tensor c = t.detach().to(torch::kCPU).resolve_conj().resolve_neg().contiguous();
        const size_t key = storages.size();
        storages.push_back(c);
        global("torch._utils", "_rebuild_tensor_v2");
        op(Op::MARK);
        op(Op::MARK);
        str("storage");
        global("torch", storage_class_name(c.scalar_type()));
        str(std::to_string(key));
        str("cpu");
        integer(c.numel());
        op(Op::TUPLE);
        op(Op::BINPERSID);  // torch.load's persistent_load fetches the storage record
        integer(0);
        const std::vector<int64_t> sizes = c.sizes().vec();
        std::vector<int64_t> strides(sizes.size(), 1);
        for (int64_t d = int64_t(sizes.size()) - 2; d >= 0; --d)
            strides[d] = strides[d + 1] * std::max<int64_t>(sizes[d + 1], 1);
        int_tuple(sizes);
        int_tuple(strides);
        op(Op::NEWFALSE);  // requires_grad
        empty_ordered_dict();  // backward hooks
        op(Op::TUPLE);
        op(Op::REDUCE);
    }

    void dict(const c10::impl::GenericDict& d, const std::string& where) {
        bool all_tensors = true;
        for (const auto& item : d) all_tensors = all_tensors && item.value().isTensor();
        if (all_tensors) empty_ordered_dict();
        else op(Op::EMPTY_DICT);
        // Python's pickler batches dict items by 1000 per SETITEMS; we do the same.
        constexpr size_t kBatch = 1000;
        size_t k = 0;
        for (const auto& item : d) {
            if (!item.key().isString()) fail_at(where, "dict keys must be strings");
            if (k % kBatch == 0) op(Op::MARK);
            const std::string key = item.key().toStringRef();
            str(key);
            value(item.value(), where.empty() ? key : where + "." + key);
            if (k % kBatch == kBatch - 1 || k + 1 == d.size()) op(Op::SETITEMS);
            ++k;
        }
    }

    void value(const c10::IValue& v, const std::string& where) {
        if (v.isTensor()) {
            const auto& t = v.toTensor();
            if (!t.defined()) fail_at(where, "tensor is undefined");
            if (t.layout() != torch::kStrided) fail_at(where, "tensor is not dense");
            tensor(t);
        } else if (v.isGenericDict()) dict(v.toGenericDict(), where);
        else if (v.isInt()) integer(v.toInt());
        else if (v.isDouble()) floating(v.toDouble());
        else if (v.isBool()) op(v.toBool() ? Op::NEWTRUE : Op::NEWFALSE);
        else if (v.isString()) str(v.toStringRef());
        else if (v.isNone()) op(Op::NONE);
        else fail_at(where, std::string("cannot write a value of type ") + v.tagKind());
    }

    [[noreturn]] static void fail_at(const std::string& where, const std::string& what) {
        throw std::runtime_error("'" + (where.empty() ? std::string("<root>") : where) + "': " + what);
    }
};

}  // namespace

std::string pickle_value(const c10::IValue& root, std::vector<torch::Tensor>& storages) {
    Pickler p(storages);
    p.op(Op::PROTO);
    p.byte(2);  // as torch.save's default pickle_protocol
    p.value(root, "");
    p.op(Op::STOP);
    return p.out;
}

}  // namespace ips::detail
