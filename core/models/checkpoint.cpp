#include "whisker/models/checkpoint.h"

#include "whisker/common/errors.h"
#include "whisker/common/files.h"

#include <ATen/ATen.h>
#include <torch/nn/module.h>
#include <torch/utils.h>

#include <nlohmann/json.hpp>
#include <quazip.h>
#include <quazipfile.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <sstream>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <unordered_map>
#include <variant>

namespace fs = std::filesystem;

namespace whisker::models {

namespace {

// ---------------------------------------------------------------------------------------
// A reader for the subset of Python's pickle protocol (0-5) that torch.save uses.
// ---------------------------------------------------------------------------------------

struct PyObject;
using PyRef = std::shared_ptr<PyObject>;

struct StorageRef {
    std::string key;
    at::ScalarType dtype = at::kFloat;
    std::int64_t numel = 0;
    // Legacy view storages: a slice of a root storage.
    std::int64_t view_offset = 0;
    std::int64_t view_numel = -1;
};

struct TensorSpec {
    std::shared_ptr<StorageRef> storage;
    std::int64_t offset = 0;
    std::vector<std::int64_t> size, stride;
};

struct PyObject {
    enum class Kind { None, Bool, Int, Float, Str, Bytes, Tuple, List, Dict, Global, Storage, Tensor, Mark, Other };
    Kind kind = Kind::None;
    bool b = false;
    std::int64_t i = 0;
    double f = 0;
    std::string s;                                  // Str, Bytes, Global ("module.name"), Other
    std::vector<PyRef> items;                       // Tuple, List
    std::vector<std::pair<PyRef, PyRef>> dict;      // Dict (ordered)
    std::shared_ptr<StorageRef> storage;            // Storage
    std::shared_ptr<TensorSpec> tensor;             // Tensor
};

PyRef make(PyObject::Kind k) {
    auto o = std::make_shared<PyObject>();
    o->kind = k;
    return o;
}

class CheckpointError : public UserError {
public:
    using UserError::UserError;
};

at::ScalarType dtype_of_storage_class(const std::string& global) {
    static const std::unordered_map<std::string, at::ScalarType> map{
        {"torch.FloatStorage", at::kFloat},   {"torch.DoubleStorage", at::kDouble},
        {"torch.HalfStorage", at::kHalf},     {"torch.BFloat16Storage", at::kBFloat16},
        {"torch.LongStorage", at::kLong},     {"torch.IntStorage", at::kInt},
        {"torch.ShortStorage", at::kShort},   {"torch.CharStorage", at::kChar},
        {"torch.ByteStorage", at::kByte},     {"torch.BoolStorage", at::kBool},
        {"torch.UntypedStorage", at::kByte},
    };
    auto it = map.find(global);
    if (it == map.end()) throw CheckpointError("unsupported storage type " + global);
    return it->second;
}

class Unpickler {
public:
    // `persistent` turns a persistent id (a tuple) into an object.
    Unpickler(const char* data, std::size_t size, std::function<PyRef(const PyRef&)> persistent)
        : p_(data), end_(data + size), persistent_(std::move(persistent)) {}

    PyRef load() {
        for (;;) {
            const std::uint8_t op = u8();
            switch (op) {
                case 0x80: u8(); break;                           // PROTO
                case 0x95: take(8); break;                        // FRAME
                case '.': {                                       // STOP
                    PyRef r = pop();
                    return r;
                }
                case '}': push(make(PyObject::Kind::Dict)); break;
                case ']': push(make(PyObject::Kind::List)); break;
                case ')': push(make(PyObject::Kind::Tuple)); break;
                case '(': push(make(PyObject::Kind::Mark)); break;
                case 'N': push(make(PyObject::Kind::None)); break;
                case 0x88: push(boolean(true)); break;
                case 0x89: push(boolean(false)); break;
                case 'J': { std::int32_t v; std::memcpy(&v, take(4), 4); push(integer(v)); break; }
                case 'K': push(integer(u8())); break;
                case 'M': { std::uint16_t v; std::memcpy(&v, take(2), 2); push(integer(v)); break; }
                case 0x8a: push(long_n(u8())); break;             // LONG1
                case 0x8b: push(long_n(u32())); break;            // LONG4
                case 'G': {                                       // BINFLOAT (big-endian)
                    const char* b = take(8);
                    std::uint64_t bits = 0;
                    for (int k = 0; k < 8; ++k) bits = (bits << 8) | static_cast<std::uint8_t>(b[k]);
                    auto o = make(PyObject::Kind::Float);
                    std::memcpy(&o->f, &bits, 8);
                    push(o);
                    break;
                }
                case 'X': push(str(u32(), PyObject::Kind::Str)); break;          // BINUNICODE
                case 0x8c: push(str(u8(), PyObject::Kind::Str)); break;          // SHORT_BINUNICODE
                case 0x8d: push(str(u64(), PyObject::Kind::Str)); break;         // BINUNICODE8
                case 'T': push(str(u32(), PyObject::Kind::Str)); break;          // BINSTRING
                case 'U': push(str(u8(), PyObject::Kind::Str)); break;           // SHORT_BINSTRING
                case 'B': push(str(u32(), PyObject::Kind::Bytes)); break;        // BINBYTES
                case 'C': push(str(u8(), PyObject::Kind::Bytes)); break;         // SHORT_BINBYTES
                case 0x8e: push(str(u64(), PyObject::Kind::Bytes)); break;       // BINBYTES8
                case 'q': memo_[u8()] = top(); break;                            // BINPUT
                case 'r': memo_[u32()] = top(); break;                           // LONG_BINPUT
                case 0x94: memo_[memo_.size()] = top(); break;                   // MEMOIZE
                case 'h': push(memo(u8())); break;                               // BINGET
                case 'j': push(memo(u32())); break;                              // LONG_BINGET
                case 'c': {                                                      // GLOBAL
                    const std::string module = line(), name = line();
                    push(global(module + "." + name));
                    break;
                }
                case 0x93: {                                                     // STACK_GLOBAL
                    const PyRef name = pop(), module = pop();
                    push(global(module->s + "." + name->s));
                    break;
                }
                case 't': { auto items = pop_to_mark(); push(tuple(std::move(items))); break; }
                case 0x85: { auto a = pop(); push(tuple({a})); break; }
                case 0x86: { auto b = pop(), a = pop(); push(tuple({a, b})); break; }
                case 0x87: { auto c = pop(), b = pop(), a = pop(); push(tuple({a, b, c})); break; }
                case 'l': { auto items = pop_to_mark(); auto l = make(PyObject::Kind::List); l->items = std::move(items); push(l); break; }
                case 'd': {                                                      // DICT
                    auto items = pop_to_mark();
                    auto d = make(PyObject::Kind::Dict);
                    for (std::size_t k = 0; k + 1 < items.size(); k += 2) d->dict.emplace_back(items[k], items[k + 1]);
                    push(d);
                    break;
                }
                case 'a': { auto v = pop(); top()->items.push_back(v); break; }  // APPEND
                case 'e': { auto items = pop_to_mark(); auto& l = top()->items; l.insert(l.end(), items.begin(), items.end()); break; }
                case 's': { auto v = pop(), k = pop(); top()->dict.emplace_back(k, v); break; }  // SETITEM
                case 'u': {                                                      // SETITEMS
                    auto items = pop_to_mark();
                    auto d = top();
                    for (std::size_t k = 0; k + 1 < items.size(); k += 2) d->dict.emplace_back(items[k], items[k + 1]);
                    break;
                }
                case 'Q': { auto pid = pop(); push(persistent_(pid)); break; }   // BINPERSID
                case 'R': { auto args = pop(), fn = pop(); push(reduce(fn, args)); break; }
                case 0x81: { auto args = pop(), cls = pop(); push(reduce(cls, args)); break; }  // NEWOBJ
                case 'b': pop(); break;   // BUILD: state (e.g. _metadata) is not needed
                case '0': pop(); break;   // POP
                case '2': push(top()); break;  // DUP
                default: {
                    char hex[8];
                    std::snprintf(hex, sizeof hex, "0x%02x", op);
                    throw CheckpointError(std::string("unsupported pickle opcode ") + hex);
                }
            }
        }
    }

    std::size_t consumed(const char* begin) const { return static_cast<std::size_t>(p_ - begin); }

private:
    const char* take(std::size_t n) {
        if (static_cast<std::size_t>(end_ - p_) < n) throw CheckpointError("the file ends in the middle of its data (truncated?)");
        const char* r = p_;
        p_ += n;
        return r;
    }
    std::uint8_t u8() { return static_cast<std::uint8_t>(*take(1)); }
    std::uint32_t u32() { std::uint32_t v; std::memcpy(&v, take(4), 4); return v; }
    std::uint64_t u64() { std::uint64_t v; std::memcpy(&v, take(8), 8); return v; }
    std::string line() {
        const char* start = p_;
        while (p_ < end_ && *p_ != '\n') ++p_;
        if (p_ >= end_) throw CheckpointError("the file ends in the middle of its data (truncated?)");
        return std::string(start, static_cast<std::size_t>(p_++ - start));
    }
    void push(PyRef o) { stack_.push_back(std::move(o)); }
    PyRef pop() {
        if (stack_.empty()) throw CheckpointError("malformed pickle (stack underflow)");
        PyRef o = std::move(stack_.back());
        stack_.pop_back();
        return o;
    }
    PyRef& top() {
        if (stack_.empty()) throw CheckpointError("malformed pickle (empty stack)");
        return stack_.back();
    }
    std::vector<PyRef> pop_to_mark() {
        std::vector<PyRef> items;
        while (!stack_.empty() && stack_.back()->kind != PyObject::Kind::Mark) items.push_back(pop());
        if (stack_.empty()) throw CheckpointError("malformed pickle (no mark)");
        stack_.pop_back();
        std::reverse(items.begin(), items.end());
        return items;
    }
    PyRef memo(std::size_t k) {
        auto it = memo_.find(k);
        if (it == memo_.end()) throw CheckpointError("malformed pickle (unknown memo entry)");
        return it->second;
    }
    static PyRef boolean(bool v) { auto o = make(PyObject::Kind::Bool); o->b = v; return o; }
    static PyRef integer(std::int64_t v) { auto o = make(PyObject::Kind::Int); o->i = v; return o; }
    static PyRef tuple(std::vector<PyRef> items) { auto o = make(PyObject::Kind::Tuple); o->items = std::move(items); return o; }
    static PyRef global(std::string name) { auto o = make(PyObject::Kind::Global); o->s = std::move(name); return o; }
    PyRef str(std::uint64_t n, PyObject::Kind kind) {
        auto o = make(kind);
        o->s.assign(take(n), n);
        return o;
    }
    PyRef long_n(std::uint64_t n) {
        const char* b = take(n);
        std::int64_t v = 0;
        if (n > 8) {
            // Only the legacy format's magic number is this long; keep its low bits.
            std::uint64_t low = 0;
            for (int k = 7; k >= 0; --k) low = (low << 8) | static_cast<std::uint8_t>(b[k]);
            auto o = integer(static_cast<std::int64_t>(low));
            o->s.assign(b, n);  // full little-endian bytes, for the magic number check
            return o;
        }
        for (std::uint64_t k = n; k-- > 0;) v = (v << 8) | static_cast<std::uint8_t>(b[k]);
        if (n > 0 && n < 8 && (static_cast<std::uint8_t>(b[n - 1]) & 0x80)) v -= (std::int64_t{1} << (8 * n));
        return integer(v);
    }

    static std::vector<std::int64_t> int_list(const PyRef& t) {
        std::vector<std::int64_t> out;
        for (const auto& x : t->items) out.push_back(x->i);
        return out;
    }

    PyRef reduce(const PyRef& fn, const PyRef& args) {
        const std::string& name = fn->s;
        if (name == "collections.OrderedDict" || name == "builtins.dict" || name == "__builtin__.dict") {
            auto d = make(PyObject::Kind::Dict);
            if (!args->items.empty())
                for (const auto& kv : args->items.front()->items) d->dict.emplace_back(kv->items.at(0), kv->items.at(1));
            return d;
        }
        if (name == "torch._utils._rebuild_tensor_v2" || name == "torch._utils._rebuild_tensor") {
            const auto& a = args->items;
            if (a.size() < 4 || a[0]->kind != PyObject::Kind::Storage) throw CheckpointError("malformed tensor record");
            auto t = make(PyObject::Kind::Tensor);
            t->tensor = std::make_shared<TensorSpec>();
            t->tensor->storage = a[0]->storage;
            t->tensor->offset = a[1]->i;
            t->tensor->size = int_list(a[2]);
            t->tensor->stride = int_list(a[3]);
            return t;
        }
        if (name == "torch._utils._rebuild_parameter" || name == "torch._utils._rebuild_parameter_with_state") {
            return args->items.at(0);
        }
        auto o = make(PyObject::Kind::Other);
        o->s = name;
        return o;
    }

    const char* p_;
    const char* end_;
    std::function<PyRef(const PyRef&)> persistent_;
    std::vector<PyRef> stack_;
    std::unordered_map<std::size_t, PyRef> memo_;
};

std::shared_ptr<StorageRef> storage_from_persistent_id(const PyRef& pid) {
    // ('storage', storage_class, key, location, numel[, view_metadata])
    if (pid->kind != PyObject::Kind::Tuple || pid->items.size() < 5 || pid->items[0]->s != "storage")
        throw CheckpointError("unsupported persistent object in checkpoint");
    auto s = std::make_shared<StorageRef>();
    s->dtype = dtype_of_storage_class(pid->items[1]->s);
    s->key = pid->items[2]->s;
    s->numel = pid->items[4]->i;
    if (pid->items.size() >= 6 && pid->items[5]->kind == PyObject::Kind::Tuple) {
        // view_metadata = (view_key, offset, view_size)
        const auto& v = pid->items[5]->items;
        s->view_offset = v.at(1)->i;
        s->view_numel = v.at(2)->i;
    }
    return s;
}

PyRef persistent_storage(const PyRef& pid) {
    auto o = make(PyObject::Kind::Storage);
    o->storage = storage_from_persistent_id(pid);
    return o;
}

// Picks the state dict out of what the pickle held and materialises its tensors.
StateDict collect_state_dict(const PyRef& root, const std::function<at::Tensor(const StorageRef&)>& storage_data) {
    PyRef dict = root;
    if (dict->kind == PyObject::Kind::Dict) {
        for (const char* wrapper : {"state_dict", "model", "model_state_dict"})
            for (const auto& [k, v] : dict->dict)
                if (k->kind == PyObject::Kind::Str && k->s == wrapper && v->kind == PyObject::Kind::Dict) dict = v;
    }
    if (dict->kind != PyObject::Kind::Dict) throw CheckpointError("the checkpoint does not hold a state dict");
    StateDict out;
    std::unordered_map<const StorageRef*, at::Tensor> cache;
    for (const auto& [k, v] : dict->dict) {
        if (k->kind != PyObject::Kind::Str) continue;
        if (v->kind != PyObject::Kind::Tensor) {
            if (v->kind == PyObject::Kind::Other)
                throw CheckpointError("entry '" + k->s + "' is a " + v->s + ", not a tensor (is this a whole pickled model "
                                      "rather than a state dict?)");
            continue;  // plain numbers (e.g. an epoch counter) beside the tensors
        }
        const TensorSpec& spec = *v->tensor;
        auto it = cache.find(spec.storage.get());
        if (it == cache.end()) it = cache.emplace(spec.storage.get(), storage_data(*spec.storage)).first;
        at::Tensor flat = it->second;
        std::int64_t needed = spec.offset;
        for (std::size_t d = 0; d < spec.size.size(); ++d)
            if (spec.size[d] > 0) needed += (spec.size[d] - 1) * spec.stride[d];
        if (!spec.size.empty() && needed >= flat.numel() &&
            std::find(spec.size.begin(), spec.size.end(), 0) == spec.size.end())
            throw CheckpointError("tensor '" + k->s + "' lies outside its storage (corrupt file)");
        out.emplace_back(k->s, flat.as_strided(spec.size, spec.stride, spec.offset).clone());
    }
    return out;
}

at::Tensor tensor_from_bytes(const char* data, std::size_t bytes, at::ScalarType dtype, std::int64_t numel) {
    const std::size_t need = static_cast<std::size_t>(numel) * at::elementSize(dtype);
    if (bytes < need) throw CheckpointError("a storage is shorter than its header says (truncated file?)");
    at::Tensor t = at::empty({numel}, at::TensorOptions().dtype(dtype));
    std::memcpy(t.data_ptr(), data, need);
    return t;
}

bool is_zip(const std::string& head) { return head.size() >= 4 && std::memcmp(head.data(), "PK\x03\x04", 4) == 0; }

StateDict read_zip_checkpoint(const fs::path& path) {
    QuaZip zip(QString::fromStdString(path.string()));
    if (!zip.open(QuaZip::mdUnzip)) throw CheckpointError("the zip structure is damaged (truncated download?)");
    std::string prefix;
    for (bool more = zip.goToFirstFile(); more; more = zip.goToNextFile()) {
        const std::string name = zip.getCurrentFileName().toStdString();
        const auto pos = name.rfind("data.pkl");
        if (pos != std::string::npos && pos + 8 == name.size() && (pos == 0 || name[pos - 1] == '/')) {
            prefix = name.substr(0, pos);
            break;
        }
    }
    if (!zip.setCurrentFile(QString::fromStdString(prefix + "data.pkl")))
        throw CheckpointError("this zip file is not a PyTorch checkpoint (no data.pkl inside)");
    auto read_entry = [&](const std::string& name) {
        if (!zip.setCurrentFile(QString::fromStdString(name))) throw CheckpointError("missing entry '" + name + "'");
        QuaZipFile f(&zip);
        if (!f.open(QIODevice::ReadOnly)) throw CheckpointError("cannot read entry '" + name + "'");
        const QByteArray bytes = f.readAll();
        f.close();
        if (f.getZipError() != UNZ_OK) throw CheckpointError("entry '" + name + "' is damaged (CRC mismatch)");
        return bytes;
    };
    const QByteArray pkl = read_entry(prefix + "data.pkl");
    Unpickler u(pkl.constData(), static_cast<std::size_t>(pkl.size()), persistent_storage);
    const PyRef root = u.load();
    return collect_state_dict(root, [&](const StorageRef& s) {
        const QByteArray bytes = read_entry(prefix + "data/" + s.key);
        return tensor_from_bytes(bytes.constData(), static_cast<std::size_t>(bytes.size()), s.dtype, s.numel);
    });
}

StateDict read_legacy_checkpoint(const std::string& bytes) {
    const char* begin = bytes.data();
    std::size_t pos = 0;
    auto next_pickle = [&](std::function<PyRef(const PyRef&)> persistent) {
        Unpickler u(begin + pos, bytes.size() - pos, std::move(persistent));
        PyRef r = u.load();
        pos += u.consumed(begin + pos);
        return r;
    };
    auto no_persistent = [](const PyRef&) -> PyRef { throw CheckpointError("unexpected persistent object"); };
    const PyRef magic = next_pickle(no_persistent);
    // 0x1950a86a20f9469cfc6c, little-endian
    static const std::string kMagic("\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19", 10);
    if (magic->kind != PyObject::Kind::Int || magic->s != kMagic)
        throw CheckpointError("this is not a PyTorch checkpoint (bad magic number)");
    next_pickle(no_persistent);  // protocol version
    next_pickle(no_persistent);  // sys_info
    std::unordered_map<std::string, std::shared_ptr<StorageRef>> storages;
    const PyRef root = next_pickle([&](const PyRef& pid) {
        auto o = make(PyObject::Kind::Storage);
        o->storage = storage_from_persistent_id(pid);
        auto& known = storages[o->storage->key];
        if (!known) known = o->storage;
        return o;
    });
    const PyRef keys = next_pickle(no_persistent);
    // Raw storages follow, in the order of `keys`: int64 element count, then the data.
    std::unordered_map<std::string, at::Tensor> data;
    for (const auto& k : keys->items) {
        if (pos + 8 > bytes.size()) throw CheckpointError("the file ends before all its tensors (truncated?)");
        std::int64_t numel;
        std::memcpy(&numel, begin + pos, 8);
        pos += 8;
        auto it = storages.find(k->s);
        const at::ScalarType dtype = it != storages.end() ? it->second->dtype : at::kFloat;
        const std::size_t nbytes = static_cast<std::size_t>(numel) * at::elementSize(dtype);
        if (numel < 0 || pos + nbytes > bytes.size()) throw CheckpointError("the file ends before all its tensors (truncated?)");
        data[k->s] = tensor_from_bytes(begin + pos, nbytes, dtype, numel);
        pos += nbytes;
    }
    return collect_state_dict(root, [&](const StorageRef& s) {
        auto it = data.find(s.key);
        if (it == data.end()) throw CheckpointError("storage '" + s.key + "' is missing from the file");
        if (s.view_numel >= 0) return it->second.narrow(0, s.view_offset, s.view_numel);
        return it->second;
    });
}

// ---------------------------------------------------------------------------------------
// safetensors
// ---------------------------------------------------------------------------------------

const std::map<std::string, at::ScalarType>& safetensors_dtypes() {
    static const std::map<std::string, at::ScalarType> m{
        {"F32", at::kFloat}, {"F64", at::kDouble}, {"F16", at::kHalf}, {"BF16", at::kBFloat16},
        {"I64", at::kLong},  {"I32", at::kInt},    {"I16", at::kShort}, {"I8", at::kChar},
        {"U8", at::kByte},   {"BOOL", at::kBool}};
    return m;
}

std::string safetensors_name(at::ScalarType t) {
    for (const auto& [name, type] : safetensors_dtypes())
        if (type == t) return name;
    throw UserError(std::string("cannot store tensors of type ") + c10::toString(t) + " in safetensors");
}

}  // namespace

const at::Tensor& find_tensor(const StateDict& state, const std::string& name) {
    for (const auto& [key, t] : state)
        if (key == name) return t;
    throw UserError("no tensor named '" + name + "'");
}

StateDict read_torch_checkpoint(const fs::path& path) {
    try {
        std::string head;
        {
            std::ifstream in(path, std::ios::binary);
            if (!in) throw UserError("cannot open weights file '" + path.string() + "'");
            head.resize(4);
            in.read(head.data(), 4);
            head.resize(static_cast<std::size_t>(in.gcount()));
        }
        if (head.empty()) throw CheckpointError("the file is empty");
        if (is_zip(head)) return read_zip_checkpoint(path);
        if (static_cast<std::uint8_t>(head[0]) != 0x80)
            throw CheckpointError("this is not a PyTorch checkpoint (it does not start with a pickle)");
        return read_legacy_checkpoint(read_file(path));
    } catch (const CheckpointError& e) {
        throw UserError("cannot read weights file '" + path.string() + "': " + e.what(),
                        "download the file again, or check that it is a state dict saved with torch.save");
    }
}

StateDict read_safetensors(const fs::path& path, std::map<std::string, std::string>* metadata) {
    const std::string bytes = read_file(path);
    auto fail = [&](const std::string& why) -> UserError {
        return UserError("cannot read safetensors file '" + path.string() + "': " + why, "write or download the file again");
    };
    if (bytes.size() < 8) throw fail("the file is too short");
    std::uint64_t header_len;
    std::memcpy(&header_len, bytes.data(), 8);
    if (header_len > bytes.size() - 8) throw fail("the header is longer than the file (truncated?)");
    nlohmann::json header;
    try {
        header = nlohmann::json::parse(bytes.substr(8, header_len));
    } catch (const std::exception&) {
        throw fail("the header is not valid JSON");
    }
    const char* data = bytes.data() + 8 + header_len;
    const std::size_t data_size = bytes.size() - 8 - header_len;
    std::vector<std::tuple<std::uint64_t, std::string, at::Tensor>> ordered;
    for (const auto& [name, info] : header.items()) {
        if (name == "__metadata__") {
            if (metadata)
                for (const auto& [k, v] : info.items()) (*metadata)[k] = v.get<std::string>();
            continue;
        }
        const auto dt = safetensors_dtypes().find(info.at("dtype").get<std::string>());
        if (dt == safetensors_dtypes().end()) throw fail("unsupported dtype " + info.at("dtype").dump());
        const auto shape = info.at("shape").get<std::vector<std::int64_t>>();
        const auto offsets = info.at("data_offsets").get<std::vector<std::uint64_t>>();
        std::int64_t numel = 1;
        for (auto d : shape) numel *= d;
        if (offsets.size() != 2 || offsets[1] > data_size || offsets[0] > offsets[1] ||
            offsets[1] - offsets[0] != static_cast<std::uint64_t>(numel) * at::elementSize(dt->second))
            throw fail("tensor '" + name + "' has inconsistent offsets (truncated?)");
        at::Tensor t = at::empty(shape, at::TensorOptions().dtype(dt->second));
        std::memcpy(t.data_ptr(), data + offsets[0], offsets[1] - offsets[0]);
        ordered.emplace_back(offsets[0], name, t);
    }
    std::sort(ordered.begin(), ordered.end(), [](const auto& a, const auto& b) { return std::get<0>(a) < std::get<0>(b); });
    StateDict out;
    for (auto& [off, name, t] : ordered) out.emplace_back(name, t);
    return out;
}

void write_safetensors(const fs::path& path, const StateDict& tensors, const std::map<std::string, std::string>& metadata) {
    nlohmann::json header = nlohmann::json::object();
    if (!metadata.empty()) header["__metadata__"] = metadata;
    std::vector<at::Tensor> contiguous;
    std::uint64_t offset = 0;
    for (const auto& [name, t] : tensors) {
        at::Tensor c = t.detach().to(at::kCPU).contiguous();
        const std::uint64_t n = static_cast<std::uint64_t>(c.numel()) * c.element_size();
        header[name] = {{"dtype", safetensors_name(c.scalar_type())}, {"shape", c.sizes().vec()}, {"data_offsets", {offset, offset + n}}};
        offset += n;
        contiguous.push_back(c);
    }
    std::string h = header.dump();
    h.append((8 - h.size() % 8) % 8, ' ');  // align the data to 8 bytes
    AtomicFile f(path);
    const std::uint64_t len = h.size();
    f.write(&len, 8);
    f.write(h);
    for (const auto& c : contiguous) f.write(c.data_ptr(), static_cast<std::size_t>(c.numel()) * c.element_size());
    f.commit();
}

StateDict read_weights_file(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw UserError("cannot open weights file '" + path.string() + "'", "check the path");
    char head[9] = {};
    in.read(head, 9);
    const auto n = in.gcount();
    if (n >= 9 && head[0] != 'P' && static_cast<unsigned char>(head[0]) != 0x80 && head[8] == '{')
        return read_safetensors(path);
    return read_torch_checkpoint(path);
}

StateDict state_dict_of(const torch::nn::Module& module) {
    StateDict out;
    for (const auto& p : module.named_parameters(true)) out.emplace_back(p.key(), p.value());
    for (const auto& b : module.named_buffers(true)) out.emplace_back(b.key(), b.value());
    return out;
}

LoadReport load_state_dict(torch::nn::Module& module, const StateDict& weights, const std::string& source) {
    std::unordered_map<std::string, at::Tensor> own;
    for (const auto& [name, t] : state_dict_of(module)) own[name] = t;
    std::unordered_map<std::string, const at::Tensor*> given;
    for (const auto& [name, t] : weights) given[name] = &t;

    std::vector<std::string> missing, unexpected, mismatched;
    LoadReport report;
    for (const auto& [name, t] : own) {
        if (given.count(name)) continue;
        if (name.size() >= 19 && name.compare(name.size() - 19, 19, "num_batches_tracked") == 0) {
            report.filled_defaults.push_back(name);
            continue;
        }
        missing.push_back(name);
    }
    for (const auto& [name, t] : weights) {
        auto it = own.find(name);
        if (it == own.end()) unexpected.push_back(name);
        else if (it->second.sizes() != t.sizes()) {
            std::ostringstream os;
            os << name << " (file " << t.sizes() << ", model " << it->second.sizes() << ")";
            mismatched.push_back(os.str());
        }
    }
    if (!missing.empty() || !unexpected.empty() || !mismatched.empty()) {
        std::sort(missing.begin(), missing.end());
        std::sort(unexpected.begin(), unexpected.end());
        std::string msg = "the weights in '" + source + "' do not fit this model:";
        auto list = [&](const char* title, const std::vector<std::string>& keys) {
            if (keys.empty()) return;
            msg += std::string("\n  ") + title + " (" + std::to_string(keys.size()) + "):";
            const std::size_t shown = std::min<std::size_t>(keys.size(), 20);
            for (std::size_t k = 0; k < shown; ++k) msg += "\n    " + keys[k];
            if (keys.size() > shown) msg += "\n    … and " + std::to_string(keys.size() - shown) + " more";
        };
        list("missing keys", missing);
        list("unexpected keys", unexpected);
        list("shape mismatches", mismatched);
        throw UserError(msg, "check that the file was made for this architecture");
    }
    torch::NoGradGuard no_grad;
    for (const auto& [name, t] : weights) {
        at::Tensor& dst = own[name];
        dst.copy_(t.to(dst.dtype()));
    }
    for (const auto& name : report.filled_defaults) own[name].zero_();
    return report;
}

}  // namespace whisker::models
