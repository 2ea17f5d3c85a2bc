//! A safetensors writer for f32 tensors: the 8-byte header length, the JSON header (dtype, shape, byte range of
//! each tensor, padded with spaces to a multiple of 8 as the reference writer does), then the data. What PEFT's
//! `adapter_model.safetensors` holds; read back by [`crate::safetensors::parse_header`].

use serde_json::{Map, Value as Json};

/// The bytes of a safetensors file of f32 tensors, each `(name, shape outermost first, values)`, in the order
/// given, with `metadata` as its `__metadata__` strings.
pub fn f32_file(tensors: &[(String, Vec<usize>, &[f32])], metadata: &[(&str, &str)]) -> Vec<u8> {
    let mut header = Map::new();
    if !metadata.is_empty() {
        let m: Map<String, Json> = metadata
            .iter()
            .map(|(k, v)| (k.to_string(), Json::String(v.to_string())))
            .collect();
        header.insert("__metadata__".into(), Json::Object(m));
    }
    let mut offset = 0usize;
    for (name, shape, values) in tensors {
        let end = offset + values.len() * 4;
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [offset, end]}),
        );
        offset = end;
    }
    let mut head = Json::Object(header).to_string().into_bytes();
    head.resize(head.len().div_ceil(8) * 8, b' ');
    let mut out = Vec::with_capacity(8 + head.len() + offset);
    out.extend((head.len() as u64).to_le_bytes());
    out.extend(head);
    for (_, _, values) in tensors {
        out.extend(values.iter().flat_map(|v| v.to_le_bytes()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_files_parse_back() {
        let a = [1.0f32, -2.0, 3.5, 0.25, 7.0, 8.0];
        let b = [9.0f32];
        let bytes = f32_file(
            &[
                ("x.lora_A.weight".into(), vec![2, 3], &a),
                ("y".into(), vec![1], &b),
            ],
            &[("format", "pt")],
        );
        let entries = crate::safetensors::parse_header(&bytes, "test").unwrap();
        assert_eq!(entries.len(), 2);
        let x = entries
            .iter()
            .find(|e| e.name == "x.lora_A.weight")
            .unwrap();
        assert_eq!((x.dtype.as_str(), x.shape.clone()), ("F32", vec![2, 3]));
        let mut back = [0f32; 6];
        crate::safetensors::floats_to_f32(crate::GgmlType::F32, &bytes[x.start..x.end], &mut back);
        assert_eq!(back, a);
    }
}
