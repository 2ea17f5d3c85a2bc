//! A safetensors writer for f32 tensors: the 8-byte header length, the JSON header (dtype, shape, byte range of
//! each tensor, padded with spaces to a multiple of 8 as the reference writer does), then the data. What PEFT's
//! `adapter_model.safetensors` holds; read back by [`crate::safetensors::parse_header`].

use serde_json::{Map, Value as Json};

/// The bytes of a safetensors file of f32 tensors, each `(name, shape outermost first, values)`, with `metadata`
/// as its `__metadata__` strings. Tensors are laid out and every JSON key is written in name order, whatever the
/// order given, so the same tensors give the same bytes; and whether serde_json keeps insertion order (its
/// `preserve_order` feature, which another crate of the build may turn on) or sorts, the header comes out alike.
pub fn f32_file(tensors: &[(String, Vec<usize>, &[f32])], metadata: &[(&str, &str)]) -> Vec<u8> {
    let mut tensors: Vec<&(String, Vec<usize>, &[f32])> = tensors.iter().collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let mut metadata = metadata.to_vec();
    metadata.sort();
    let mut header = Map::new();
    if !metadata.is_empty() {
        let m: Map<String, Json> = metadata
            .iter()
            .map(|(k, v)| (k.to_string(), Json::String(v.to_string())))
            .collect();
        header.insert("__metadata__".into(), Json::Object(m));
    }
    let mut offset = 0usize;
    for (name, shape, values) in &tensors {
        let end = offset + values.len() * 4;
        header.insert(
            name.clone(),
            serde_json::json!({"data_offsets": [offset, end], "dtype": "F32", "shape": shape}),
        );
        offset = end;
    }
    let mut head = Json::Object(header).to_string().into_bytes();
    head.resize(head.len().div_ceil(8) * 8, b' ');
    let mut out = Vec::with_capacity(8 + head.len() + offset);
    out.extend((head.len() as u64).to_le_bytes());
    out.extend(head);
    for (_, _, values) in &tensors {
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

    /// The same tensors in another order make the same bytes, and the header's keys are in sorted order (as a
    /// serde_json without `preserve_order` would write them).
    #[test]
    fn bytes_do_not_depend_on_the_order_given() {
        let (a, b, c) = ([1.0f32, 2.0], [3.0f32], [4.0f32, 5.0, 6.0]);
        let one = f32_file(
            &[
                ("b".into(), vec![1], &b),
                ("a".into(), vec![2], &a),
                ("c".into(), vec![3], &c),
            ],
            &[("z", "1"), ("format", "pt")],
        );
        let two = f32_file(
            &[
                ("c".into(), vec![3], &c),
                ("a".into(), vec![2], &a),
                ("b".into(), vec![1], &b),
            ],
            &[("format", "pt"), ("z", "1")],
        );
        assert_eq!(one, two);
        let n = u64::from_le_bytes(one[..8].try_into().unwrap()) as usize;
        let head = std::str::from_utf8(&one[8..8 + n]).unwrap();
        let at = |k: &str| head.find(k).unwrap();
        assert!(
            at("__metadata__") < at("\"a\"")
                && at("\"a\"") < at("\"b\"")
                && at("\"b\"") < at("\"c\"")
        );
        assert!(at("data_offsets") < at("dtype") && at("dtype") < at("shape"));
        assert!(at("format") < at("\"z\""));
    }
}
