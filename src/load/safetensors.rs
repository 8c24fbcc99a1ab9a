//! safetensors reader: only the header is read up front (8-byte little-endian length, then
//! JSON); tensor bytes are read on demand. The `safetensors` crate wants the whole file in
//! one buffer, so this is our own parser, validating everything the header claims:
//! header length sane and inside the file, valid JSON, known dtypes, shape product × dtype
//! size == byte length, offsets inside the data section, and the tensors tiling the data
//! section exactly (no overlaps, holes or trailing bytes, as the reference implementation
//! requires).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;

use super::archive::{byte_len, ArchiveFormat, FileDType, TensorArchive, TensorEntry};
use super::source::{read_vec, ByteSource};
use super::{LoadError, LoadResult};

/// Headers larger than this are refused (real ones are a few hundred KB).
pub const MAX_HEADER_BYTES: u64 = 100 << 20;

const FORMAT: &str = "safetensors";

/// The header's top-level object in file order, duplicates kept (so we can reject them).
struct OrderedObject(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for OrderedObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OrderedObject;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OrderedObject, A::Error> {
                let mut v = Vec::new();
                while let Some((k, val)) = map.next_entry::<String, Value>()? {
                    v.push((k, val));
                }
                Ok(OrderedObject(v))
            }
        }
        d.deserialize_map(V)
    }
}

/// Parse and validate a safetensors header. `header` is the JSON text, `data_len` the size of
/// the data section that follows it, `data_start` its absolute offset in the file.
pub fn parse_header(
    file: &str,
    header: &[u8],
    data_start: u64,
    data_len: u64,
) -> LoadResult<(Vec<TensorEntry>, BTreeMap<String, String>)> {
    let corrupt = |message: String| LoadError::Corrupt { file: file.to_string(), format: FORMAT, message };
    let obj: OrderedObject = serde_json::from_slice(header).map_err(|e| corrupt(format!("header is not a valid JSON object: {e}")))?;
    let mut metadata = BTreeMap::new();
    let mut entries = Vec::with_capacity(obj.0.len());
    let mut ranges: Vec<(u64, u64, usize)> = Vec::with_capacity(obj.0.len());
    let mut seen_meta = false;
    let mut names = std::collections::HashSet::new();
    for (name, val) in obj.0 {
        if name == "__metadata__" {
            if seen_meta {
                return Err(corrupt("`__metadata__` appears twice".into()));
            }
            seen_meta = true;
            let m = val.as_object().ok_or_else(|| corrupt("`__metadata__` is not an object".into()))?;
            for (k, v) in m {
                let s = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                metadata.insert(k.clone(), s);
            }
            continue;
        }
        let t = |msg: &str| corrupt(format!("tensor `{name}`: {msg}"));
        if !names.insert(name.clone()) {
            return Err(t("appears twice"));
        }
        let o = val.as_object().ok_or_else(|| t("entry is not an object"))?;
        let dtype_s = o.get("dtype").and_then(Value::as_str).ok_or_else(|| t("missing or non-string `dtype`"))?;
        let dtype = FileDType::from_safetensors_name(dtype_s).ok_or_else(|| LoadError::DType {
            file: file.to_string(),
            tensor: name.clone(),
            dtype: dtype_s.to_string(),
        })?;
        let shape_v = o.get("shape").and_then(Value::as_array).ok_or_else(|| t("missing or non-array `shape`"))?;
        let shape64: Vec<u64> = shape_v
            .iter()
            .map(Value::as_u64)
            .collect::<Option<_>>()
            .ok_or_else(|| t("`shape` holds something other than non-negative integers"))?;
        let offs = o.get("data_offsets").and_then(Value::as_array).ok_or_else(|| t("missing or non-array `data_offsets`"))?;
        let (begin, end) = match offs.as_slice() {
            [b, e] => (
                b.as_u64().ok_or_else(|| t("`data_offsets` are not non-negative integers"))?,
                e.as_u64().ok_or_else(|| t("`data_offsets` are not non-negative integers"))?,
            ),
            _ => return Err(t("`data_offsets` must hold exactly two numbers")),
        };
        if end < begin {
            return Err(t(&format!("data_offsets [{begin}, {end}] end before they begin")));
        }
        if end > data_len {
            return Err(t(&format!("data_offsets [{begin}, {end}] run past the data section ({data_len} bytes; truncated file?)")));
        }
        let want = byte_len(&shape64, dtype).ok_or_else(|| t(&format!("shape {shape64:?} overflows")))?;
        if want != end - begin {
            return Err(t(&format!("shape {shape64:?} × {dtype} needs {want} bytes but data_offsets [{begin}, {end}] hold {}", end - begin)));
        }
        let shape: Vec<usize> = shape64
            .iter()
            .map(|&d| usize::try_from(d))
            .collect::<Result<_, _>>()
            .map_err(|_| t("a dimension does not fit this platform's usize"))?;
        ranges.push((begin, end, entries.len()));
        entries.push(TensorEntry { name, dtype, shape, offset: data_start + begin, len: end - begin });
    }
    // The tensors must tile the data section: sorted by start, each one starts where the
    // previous ended (overlaps and holes are both corruption), and the last ends at the end.
    ranges.sort_unstable();
    let mut pos = 0u64;
    for &(b, e, i) in &ranges {
        let n = &entries[i].name;
        if b < pos {
            return Err(corrupt(format!("tensor `{n}` (bytes {b}..{e}) overlaps the previous tensor (which ends at {pos})")));
        }
        if b > pos {
            return Err(corrupt(format!("hole of {} bytes before tensor `{n}` (bytes {b}..{e})", b - pos)));
        }
        pos = e;
    }
    if pos != data_len {
        return Err(corrupt(format!("tensors end at byte {pos} of a {data_len}-byte data section (trailing data or a missing tensor)")));
    }
    Ok((entries, metadata))
}

/// Read a safetensors file's header and make an archive over it.
pub fn read_safetensors(source: Arc<dyn ByteSource>) -> LoadResult<TensorArchive> {
    let file = source.name();
    let corrupt = |message: String| LoadError::Corrupt { file: file.clone(), format: FORMAT, message };
    let total = source.len();
    if total < 8 {
        return Err(corrupt(format!("file is only {total} bytes (no header length)")));
    }
    let mut lenb = [0u8; 8];
    source.read_at(0, &mut lenb)?;
    let n = u64::from_le_bytes(lenb);
    if n == 0 {
        return Err(corrupt("header length is 0".into()));
    }
    if n > MAX_HEADER_BYTES {
        return Err(corrupt(format!("header length {n} exceeds the {MAX_HEADER_BYTES}-byte limit (not a safetensors file?)")));
    }
    if n > total - 8 {
        return Err(corrupt(format!("header length {n} runs past the end of the {total}-byte file (truncated?)")));
    }
    let header = read_vec(source.as_ref(), 8, n, FORMAT)?;
    if header.first() != Some(&b'{') {
        return Err(corrupt("header does not start with `{`".into()));
    }
    let (entries, metadata) = parse_header(&file, &header, 8 + n, total - 8 - n)?;
    TensorArchive::new(source, ArchiveFormat::Safetensors, entries, metadata)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::source::MemorySource;

    fn file(header: &str, data: &[u8]) -> Arc<dyn ByteSource> {
        let mut v = (header.len() as u64).to_le_bytes().to_vec();
        v.extend_from_slice(header.as_bytes());
        v.extend_from_slice(data);
        Arc::new(MemorySource::new("t.safetensors", v))
    }

    fn err(header: &str, data: &[u8]) -> String {
        read_safetensors(file(header, data)).unwrap_err().to_string()
    }

    #[test]
    fn reads_f16_and_f32() {
        let mut data = Vec::new();
        data.extend(half::f16::from_f32(0.5).to_le_bytes());
        data.extend(half::f16::from_f32(-1.0).to_le_bytes());
        data.extend(3.25f32.to_le_bytes());
        let h = r#"{"__metadata__":{"format":"pt"},"a":{"dtype":"F16","shape":[2],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1,1],"data_offsets":[4,8]}}"#;
        let a = read_safetensors(file(h, &data)).unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(a.metadata().get("format").map(String::as_str), Some("pt"));
        assert_eq!(a.read_f32("a").unwrap().data, vec![0.5, -1.0]);
        let b = a.read_f32("b").unwrap();
        assert_eq!(b.shape, vec![1, 1]);
        assert_eq!(b.data, vec![3.25]);
        assert_eq!(a.read_raw("b").unwrap(), 3.25f32.to_le_bytes().to_vec());
        assert!(matches!(a.read_f32("c"), Err(LoadError::MissingTensor { .. })));
    }

    #[test]
    fn header_lies() {
        let d = [0u8; 8];
        assert!(err(r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#, &d)
            .contains("overlaps"));
        assert!(err(r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#, &d).contains("hole"));
        assert!(err(r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, &d).contains("trailing"));
        assert!(err(r#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, &d).contains("needs 12 bytes"));
        assert!(err(r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#, &d).contains("past the data section"));
        assert!(err(r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}}"#, &d).contains("end before"));
        assert!(err(r#"{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,8]}}"#, &d).contains("non-negative"));
        assert!(err(r#"{"a":{"dtype":"F32","shape":[18446744073709551615,4],"data_offsets":[0,8]}}"#, &d).contains("overflows"));
        assert!(err(r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0]}}"#, &d).contains("exactly two"));
        assert!(err(r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, &d)
            .contains("twice"));
        assert!(err(r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}"#, &d).contains("JSON"));
        assert!(err(r#"{"a":[1,2]}"#, &d).contains("not an object"));
        let e = read_safetensors(file(r#"{"a":{"dtype":"C64","shape":[1],"data_offsets":[0,8]}}"#, &d)).unwrap_err();
        assert!(matches!(e, LoadError::DType { ref tensor, .. } if tensor == "a"), "{e}");
    }

    #[test]
    fn bad_lengths() {
        let src = |v: Vec<u8>| -> Arc<dyn ByteSource> { Arc::new(MemorySource::new("x.safetensors", v)) };
        assert!(read_safetensors(src(vec![1, 2, 3])).unwrap_err().to_string().contains("only 3 bytes"));
        let mut v = u64::MAX.to_le_bytes().to_vec();
        v.extend(b"{}");
        assert!(read_safetensors(src(v)).unwrap_err().to_string().contains("limit"));
        let mut v = 1000u64.to_le_bytes().to_vec();
        v.extend(b"{}");
        assert!(read_safetensors(src(v)).unwrap_err().to_string().contains("past the end"));
        let mut v = 0u64.to_le_bytes().to_vec();
        v.extend(b"{}");
        assert!(read_safetensors(src(v)).is_err());
        // Every error names the file.
        assert!(err("{}", &[1]).contains("t.safetensors"));
        // An empty file with an empty header is fine.
        assert_eq!(read_safetensors(file("{}  ", &[])).unwrap().len(), 0);
    }
}
