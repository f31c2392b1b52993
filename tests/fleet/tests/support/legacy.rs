//! A "legacy" child module: the release's child plus an exported `canister_pre_upgrade` that traps (body
//! `unreachable`), as a module whose pre_upgrade cannot run any more would (e.g. it serializes too much). Same
//! code otherwise, so the same stable layout: an upgrade that skips pre_upgrade keeps every member.

fn leb(b: &[u8], i: &mut usize) -> u64 {
    let (mut v, mut shift) = (0u64, 0);
    loop {
        let byte = b[*i];
        *i += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return v;
        }
        shift += 7;
    }
}

fn put_leb(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn skip_name(b: &[u8], i: &mut usize) {
    let n = leb(b, i) as usize;
    *i += n;
}

fn skip_limits(b: &[u8], i: &mut usize) {
    let flags = b[*i];
    *i += 1;
    leb(b, i);
    if flags & 1 != 0 {
        leb(b, i);
    }
}

/// Appends `extra` to a vector section body (`count ‖ entries`).
fn append(body: &[u8], extra: &[u8]) -> Vec<u8> {
    let mut i = 0;
    let count = leb(body, &mut i);
    let mut out = Vec::new();
    put_leb(&mut out, count + 1);
    out.extend_from_slice(&body[i..]);
    out.extend_from_slice(extra);
    out
}

pub fn with_trapping_pre_upgrade(wasm_gz: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut wasm = Vec::new();
    flate2::read::GzDecoder::new(wasm_gz)
        .read_to_end(&mut wasm)
        .expect("gunzip");
    assert_eq!(&wasm[..4], b"\0asm");
    let mut sections: Vec<(u8, Vec<u8>)> = Vec::new();
    let mut i = 8;
    while i < wasm.len() {
        let id = wasm[i];
        i += 1;
        let size = leb(&wasm, &mut i) as usize;
        sections.push((id, wasm[i..i + size].to_vec()));
        i += size;
    }
    let body = |id: u8| &sections.iter().find(|(s, _)| *s == id).expect("section").1;
    // The index of a `() -> ()` type.
    let types = body(1);
    let mut i = 0;
    let n = leb(types, &mut i);
    let unit_type = (0..n)
        .find(|_| {
            assert_eq!(types[i], 0x60, "only plain function types are supported");
            i += 1;
            let params = leb(types, &mut i);
            i += params as usize;
            let results = leb(types, &mut i);
            i += results as usize;
            params == 0 && results == 0
        })
        .expect("a () -> () type");
    // Function index of the new function: imported functions + defined functions.
    let imports = body(2);
    let mut i = 0;
    let mut imported_funcs = 0;
    for _ in 0..leb(imports, &mut i) {
        skip_name(imports, &mut i);
        skip_name(imports, &mut i);
        let kind = imports[i];
        i += 1;
        match kind {
            0 => {
                leb(imports, &mut i);
                imported_funcs += 1;
            }
            1 => {
                i += 1;
                skip_limits(imports, &mut i);
            }
            2 => skip_limits(imports, &mut i),
            3 => i += 2,
            k => panic!("import kind {k}"),
        }
    }
    let defined = leb(body(3), &mut 0);
    let func_index = imported_funcs + defined;

    let mut out = wasm[..8].to_vec();
    for (id, body) in &sections {
        let body = match id {
            3 => {
                let mut e = Vec::new();
                put_leb(&mut e, unit_type);
                append(body, &e)
            }
            7 => {
                let mut e = Vec::new();
                let name = b"canister_pre_upgrade";
                put_leb(&mut e, name.len() as u64);
                e.extend_from_slice(name);
                e.push(0x00);
                put_leb(&mut e, func_index);
                append(body, &e)
            }
            // size 3: no locals, `unreachable`, `end`.
            10 => append(body, &[3, 0x00, 0x00, 0x0b]),
            _ => body.clone(),
        };
        out.push(*id);
        put_leb(&mut out, body.len() as u64);
        out.extend_from_slice(&body);
    }
    out
}
