"""A GGUF reader/writer that knows where every field lives, for mutation.

`parse()` turns a file into a `Gguf`: its KV pairs and tensor infos as Python values, the data
section as bytes, and `fields`, the offset, width and meaning of every numeric header field
(so a mutator can overwrite one in place) and `boundaries`, every offset where a structure
starts or ends (so a mutator can truncate there). `Gguf.encode()` writes a (possibly edited)
model back; `Gguf.raw` is the original bytes.

Independent of llama.cpp and of the `gguf` package on purpose: the fuzzer must be able to
write files that no well-behaved writer would produce.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field, replace
from typing import Any

MAGIC = b"GGUF"

# GGUF value types
U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)
SCALAR_FMT = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f", BOOL: "<?",
              U64: "<Q", I64: "<q", F64: "<d"}
TYPE_NAMES = {U8: "u8", I8: "i8", U16: "u16", I16: "i16", U32: "u32", I32: "i32", F32: "f32", BOOL: "bool",
              STRING: "str", ARRAY: "arr", U64: "u64", I64: "i64", F64: "f64"}
INT_TYPES = (U8, I8, U16, I16, U32, I32, U64, I64)
FLOAT_TYPES = (F32, F64)

DEFAULT_ALIGNMENT = 32


@dataclass
class KV:
    key: str
    vtype: int                 # outer type: a scalar type, STRING or ARRAY
    value: Any                 # scalar, str/bytes, or a list for arrays
    etype: int = -1            # element type of an ARRAY

    def encode(self) -> bytes:
        out = _str(self.key) + struct.pack("<I", self.vtype)
        if self.vtype == ARRAY:
            out += struct.pack("<IQ", self.etype, len(self.value))
            out += b"".join(_value(self.etype, v) for v in self.value)
        else:
            out += _value(self.vtype, self.value)
        return out


@dataclass
class TensorInfo:
    name: str | bytes
    dims: list[int]
    ttype: int
    offset: int

    def encode(self) -> bytes:
        return (_str(self.name) + struct.pack("<I", len(self.dims)) +
                b"".join(struct.pack("<q" if d < 0 else "<Q", d) for d in self.dims) +
                struct.pack("<IQ", self.ttype, self.offset))


@dataclass(frozen=True)
class Field:
    """A numeric header field: where it is, its struct format, what it is."""
    name: str
    offset: int
    fmt: str      # struct format, e.g. "<Q"
    kind: str     # version|count|key_len|type|arr_type|arr_n|str_len|value|elem|name_len|n_dims|dim|ttype|offset

    @property
    def size(self) -> int:
        return struct.calcsize(self.fmt)


@dataclass
class Gguf:
    version: int
    kvs: list[KV]
    tensors: list[TensorInfo]
    data: bytes                       # data section (from the aligned start)
    raw: bytes = b""
    fields: list[Field] = field(default_factory=list)
    boundaries: list[tuple[int, str]] = field(default_factory=list)
    data_start: int = 0

    @property
    def alignment(self) -> int:
        for kv in self.kvs:
            if kv.key == "general.alignment" and kv.vtype == U32:
                return int(kv.value)
        return DEFAULT_ALIGNMENT

    def kv(self, key: str) -> KV | None:
        return next((kv for kv in self.kvs if kv.key == key), None)

    def copy(self) -> Gguf:
        return Gguf(self.version, [replace(kv, value=list(kv.value) if isinstance(kv.value, list) else kv.value)
                                   for kv in self.kvs],
                    [replace(t, dims=list(t.dims)) for t in self.tensors], self.data)

    def encode(self, *, n_tensors: int | None = None, n_kv: int | None = None, alignment: int | None = None,
               data: bytes | None = None) -> bytes:
        head = MAGIC + struct.pack("<IQQ", self.version & 0xFFFFFFFF,
                                   (len(self.tensors) if n_tensors is None else n_tensors) & (2**64 - 1),
                                   (len(self.kvs) if n_kv is None else n_kv) & (2**64 - 1))
        head += b"".join(kv.encode() for kv in self.kvs)
        head += b"".join(t.encode() for t in self.tensors)
        align = alignment or self.alignment
        if align <= 0 or align & (align - 1):
            align = DEFAULT_ALIGNMENT  # an invalid alignment is the reader's problem; pad to something
        head += b"\0" * (-len(head) % align)
        return head + (self.data if data is None else data)


def _str(s: str | bytes) -> bytes:
    b = s.encode("utf-8", "surrogateescape") if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def _value(vtype: int, v: Any) -> bytes:
    if vtype == STRING:
        return _str(v)
    fmt = SCALAR_FMT.get(vtype)
    if fmt is None:
        raise ValueError(f"cannot encode a value of GGUF type {vtype}")
    if vtype == BOOL:
        return struct.pack("<B", int(v) & 0xFF)
    if vtype in INT_TYPES:
        bits = struct.calcsize(fmt) * 8
        v = int(v) & ((1 << bits) - 1)
        fmt = fmt.upper() if fmt[-1].islower() else fmt  # write the bit pattern unsigned
    return struct.pack(fmt, v)


class _Reader:
    def __init__(self, buf: bytes) -> None:
        self.buf, self.pos = buf, 0

    def take(self, fmt: str) -> Any:
        value = struct.unpack_from(fmt, self.buf, self.pos)[0]
        self.pos += struct.calcsize(fmt)
        return value

    def string(self) -> bytes:
        n = self.take("<Q")
        if n > len(self.buf) - self.pos:
            raise ValueError("string runs past the end")
        s = self.buf[self.pos:self.pos + n]
        self.pos += n
        return s


def parse(buf: bytes, *, element_fields: int = 6) -> Gguf:
    """Parse a well-formed GGUF v2/v3 file. `element_fields`: how many elements of each array
    become mutable fields (the first and last ones)."""
    r = _Reader(buf)
    fields: list[Field] = []
    bounds: list[tuple[int, str]] = [(0, "start"), (4, "after magic")]

    def fld(name: str, fmt: str, kind: str) -> Any:
        fields.append(Field(name, r.pos, fmt, kind))
        return r.take(fmt)

    if buf[:4] != MAGIC:
        raise ValueError("not GGUF")
    r.pos = 4
    version = fld("header.version", "<I", "version")
    bounds.append((r.pos, "after version"))
    n_tensors = fld("header.n_tensors", "<Q", "count")
    bounds.append((r.pos, "after n_tensors"))
    n_kv = fld("header.n_kv", "<Q", "count")
    bounds.append((r.pos, "after n_kv"))
    kvs: list[KV] = []
    for i in range(n_kv):
        start = r.pos
        bounds.append((start, f"kv[{i}] start"))
        fields.append(Field(f"kv[{i}].key_len", r.pos, "<Q", "key_len"))
        key = r.string().decode("utf-8", "surrogateescape")
        bounds.append((r.pos, f"kv[{i}] after key"))
        tag = f"kv[{i}]({key})"
        vtype = fld(f"{tag}.type", "<I", "type")
        bounds.append((r.pos, f"{tag} after type"))
        if vtype == ARRAY:
            etype = fld(f"{tag}.arr_type", "<I", "arr_type")
            n = fld(f"{tag}.arr_n", "<Q", "arr_n")
            bounds.append((r.pos, f"{tag} after array header"))
            values = []
            for j in range(n):
                keep = j < element_fields // 2 or j >= n - element_fields // 2
                if etype == STRING:
                    if keep:
                        fields.append(Field(f"{tag}[{j}].len", r.pos, "<Q", "str_len"))
                        bounds.append((r.pos, f"{tag}[{j}] start"))
                    values.append(r.string().decode("utf-8", "surrogateescape"))
                else:
                    if keep:
                        fields.append(Field(f"{tag}[{j}]", r.pos, SCALAR_FMT[etype], "elem"))
                    values.append(r.take(SCALAR_FMT[etype]))
            kvs.append(KV(key, ARRAY, values, etype))
        elif vtype == STRING:
            fields.append(Field(f"{tag}.len", r.pos, "<Q", "str_len"))
            kvs.append(KV(key, STRING, r.string().decode("utf-8", "surrogateescape")))
        else:
            kvs.append(KV(key, vtype, fld(f"{tag}.value", SCALAR_FMT[vtype], "value")))
        bounds.append((r.pos, f"{tag} end"))
    tensors: list[TensorInfo] = []
    for i in range(n_tensors):
        bounds.append((r.pos, f"tensor_info[{i}] start"))
        fields.append(Field(f"ti[{i}].name_len", r.pos, "<Q", "name_len"))
        name = r.string().decode("utf-8", "surrogateescape")
        tag = f"ti[{i}]({name})"
        bounds.append((r.pos, f"{tag} after name"))
        n_dims = fld(f"{tag}.n_dims", "<I", "n_dims")
        dims = [fld(f"{tag}.ne[{j}]", "<q", "dim") for j in range(n_dims)]
        bounds.append((r.pos, f"{tag} after dims"))
        ttype = fld(f"{tag}.type", "<I", "ttype")
        offset = fld(f"{tag}.offset", "<Q", "offset")
        bounds.append((r.pos, f"{tag} end"))
        tensors.append(TensorInfo(name, dims, ttype, offset))
    g = Gguf(version, kvs, tensors, b"")
    align = g.alignment
    data_start = r.pos + (-r.pos % align)
    bounds.append((data_start, "data start"))
    for t in tensors:
        bounds.append((data_start + t.offset, f"data of {t.name}"))
        bounds.append((data_start + t.offset + 1, f"1 byte into the data of {t.name}"))
    bounds.append((len(buf) - 1, "one byte short"))
    g.data = buf[data_start:]
    g.raw = buf
    g.fields = fields
    g.boundaries = sorted(set(b for b in bounds if 0 <= b[0] < len(buf)))
    g.data_start = data_start
    return g
