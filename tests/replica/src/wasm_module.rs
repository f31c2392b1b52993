//! Canister modules: decoding (raw or gzip), validation against the IC's rules, and instrumentation so that the
//! replica can snapshot and restore an instance (all globals, the memory and the table get exported, and the
//! `(start)` function is exported instead of run at instantiation).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use wasmparser::{ExternalKind, Operator, Parser, Payload, TypeRef};

use crate::system_api::IC0_IMPORTS;

/// Uncompressed module limit, facts §4 (`WASM_MAX_SIZE`).
pub const MAX_WASM_SIZE: usize = 100 * 1024 * 1024;
pub const EOP_SECTION: &str = "icp:private enhanced-orthogonal-persistence";

pub const MEMORY_EXPORT: &str = "__replica_memory";
/// The module's memory becomes an import, so that the replica can give every instance a heap of its own making
/// (see `crate::heap`).
pub const MEMORY_IMPORT: (&str, &str) = ("__replica", "memory");
pub const TABLE_EXPORT: &str = "__replica_table";
pub const START_EXPORT: &str = "__replica_start";
pub const GLOBAL_EXPORT_PREFIX: &str = "__replica_global_";

const SYSTEM_EXPORTS: &[&str] = &[
    "canister_init",
    "canister_pre_upgrade",
    "canister_post_upgrade",
    "canister_inspect_message",
    "canister_heartbeat",
    "canister_global_timer",
    "canister_on_low_wasm_memory",
];

/// A validated, instrumented and compiled module, shared by every canister running the same code.
pub struct CompiledModule {
    pub module: wasmi::Module,
    /// Names after `canister_update `.
    pub updates: BTreeSet<String>,
    /// Names after `canister_query ` and `canister_composite_query `.
    pub queries: BTreeSet<String>,
    pub composite_queries: BTreeSet<String>,
    /// Exported system entry points (`canister_init`, ...).
    pub system_exports: BTreeSet<String>,
    pub global_count: u32,
    pub has_memory: bool,
    pub has_table: bool,
    pub has_start: bool,
    /// Carries the `icp:private enhanced-orthogonal-persistence` custom section.
    pub enhanced_orthogonal_persistence: bool,
    /// Canister metadata: the `icp:public <name>` and `icp:private <name>` custom sections, by name.
    pub metadata: BTreeMap<String, Metadata>,
    /// Wasm instructions in function bodies and global initializers (`end` included): what compilation is
    /// charged for.
    pub wasm_instructions: u64,
    /// The memory's limits in Wasm pages (minimum, maximum), if the module has a memory.
    pub memory: Option<(u32, Option<u32>)>,
    /// An instance keeps no state besides its memory and mutable globals: no instruction changes a table or drops
    /// a segment, and no mutable global holds a reference. Its instance can then be dropped while the canister is
    /// idle and made again (`execution::Live`).
    pub reinstantiable: bool,
}

/// One canister metadata section (spec "Canister module format"; read through the state tree and
/// `canister_metadata`). Private sections are visible to the canister's controllers only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Metadata {
    pub public: bool,
    pub content: Vec<u8>,
}

/// Spec "Canister module format": at most 16 `icp:` sections, at most 1 MiB of names and contents together.
pub const MAX_METADATA_SECTIONS: usize = 16;
pub const MAX_METADATA_BYTES: usize = 1024 * 1024;

impl CompiledModule {
    pub fn exports(&self, name: &str) -> bool {
        self.system_exports.contains(name)
    }
}

/// Spec "Canister module format": `\0asm` is a raw module, `1f 8b 08` a gzipped one; anything else is invalid.
pub fn decode(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let raw = if bytes.starts_with(b"\0asm") {
        bytes.to_vec()
    } else if bytes.starts_with(&[0x1f, 0x8b, 0x08]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .take(MAX_WASM_SIZE as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| format!("Failed to decode wasm module: failed to decompress gzip: {e}"))?;
        out
    } else {
        return Err("Failed to decode wasm module: unsupported canister module format".into());
    };
    if raw.len() > MAX_WASM_SIZE {
        return Err(format!(
            "Wasm module size exceeds the limit of {MAX_WASM_SIZE} bytes (uncompressed)"
        ));
    }
    Ok(raw)
}

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Compiles each distinct module once (keyed by SHA-256 of the uncompressed module).
#[derive(Default)]
pub struct ModuleCache {
    modules: HashMap<[u8; 32], Arc<CompiledModule>>,
}

/// A module from the cache, and whether it had been compiled before (the IC then charges a hundredth of the
/// compilation).
pub struct Cached {
    pub module: Arc<CompiledModule>,
    pub compiled_before: bool,
}

impl ModuleCache {
    pub fn get_or_compile(&mut self, engine: &wasmi::Engine, raw: &[u8]) -> Result<Cached, String> {
        let key = sha256(raw);
        if let Some(m) = self.modules.get(&key) {
            return Ok(Cached {
                module: m.clone(),
                compiled_before: true,
            });
        }
        let compiled = Arc::new(compile(engine, raw)?);
        self.modules.insert(key, compiled.clone());
        Ok(Cached {
            module: compiled,
            compiled_before: false,
        })
    }

    pub fn len(&self) -> usize {
        self.modules.len()
    }
}

fn invalid_import(kind: &str, name: &str, module: &str) -> String {
    format!(
        "Wasm module has an invalid import section. Module imports {kind} '{name}' from '{module}' that is not exported by the runtime."
    )
}

/// Validates `raw` against the IC's rules (imports, exports, memories) and compiles the instrumented module.
pub fn compile(engine: &wasmi::Engine, raw: &[u8]) -> Result<CompiledModule, String> {
    let mut compiled = CompiledModule {
        module: wasmi::Module::new(engine, b"\0asm\x01\0\0\0").expect("empty module"),
        updates: BTreeSet::new(),
        queries: BTreeSet::new(),
        composite_queries: BTreeSet::new(),
        system_exports: BTreeSet::new(),
        global_count: 0,
        has_memory: false,
        has_table: false,
        has_start: false,
        enhanced_orthogonal_persistence: false,
        metadata: BTreeMap::new(),
        wasm_instructions: 0,
        memory: None,
        reinstantiable: true,
    };
    for payload in Parser::new(0).parse_all(raw) {
        if let Ok(Payload::MemorySection(reader)) = payload {
            if let Some(Ok(m)) = reader.into_iter().next() {
                if m.memory64 {
                    return Err("Wasm module is not valid: 64-bit memories are not supported".into());
                }
                compiled.memory = Some((m.initial as u32, m.maximum.map(|max| max as u32)));
            }
        }
    }
    let mut imports_written = false;
    let mut out = wasm_encoder::Module::new();
    let mut start = None;
    let mut memories = 0u32;
    let mut exported_memories = 0u32;
    let mut export_section: Option<wasm_encoder::ExportSection> = None;
    let mut export_inserted = false;

    let extra_exports = |c: &CompiledModule, start: Option<u32>, section: &mut wasm_encoder::ExportSection| {
        use wasm_encoder::ExportKind;
        if c.has_memory {
            section.export(MEMORY_EXPORT, ExportKind::Memory, 0);
        }
        if c.has_table {
            section.export(TABLE_EXPORT, ExportKind::Table, 0);
        }
        if let Some(f) = start {
            section.export(START_EXPORT, ExportKind::Func, f);
        }
        for g in 0..c.global_count {
            section.export(&format!("{GLOBAL_EXPORT_PREFIX}{g}"), ExportKind::Global, g);
        }
    };

    for payload in Parser::new(0).parse_all(raw) {
        let payload = payload.map_err(|e| format!("Wasm module is not valid: {e}"))?;
        // The memory import goes where the import section is, or would be: before the function section.
        if let Some((id, _)) = payload.as_section() {
            if id >= 3 && !imports_written {
                out.section(&import_section(&[], compiled.memory));
                imports_written = true;
            }
        }
        match &payload {
            Payload::ImportSection(reader) => {
                let mut functions = Vec::new();
                for import in reader.clone() {
                    let import = import.map_err(|e| e.to_string())?;
                    let kind = match import.ty {
                        TypeRef::Func(_) => "function",
                        TypeRef::Memory(_) => "memory",
                        TypeRef::Table(_) => "table",
                        TypeRef::Global(_) => "global",
                        TypeRef::Tag(_) => "tag",
                    };
                    if import.module != "ic0" || kind != "function" || !IC0_IMPORTS.contains(&import.name) {
                        return Err(invalid_import(kind, import.name, import.module));
                    }
                    if let TypeRef::Func(ty) = import.ty {
                        functions.push((import.name, ty));
                    }
                }
                out.section(&import_section(&functions, compiled.memory));
                imports_written = true;
                continue;
            }
            Payload::MemorySection(reader) => {
                memories += reader.count();
                compiled.has_memory = true;
                continue;
            }
            Payload::TableSection(reader) => compiled.has_table = reader.count() > 0,
            Payload::GlobalSection(reader) => {
                compiled.global_count = reader.count();
                for global in reader.clone() {
                    let global = global.map_err(|e| e.to_string())?;
                    if global.ty.mutable && matches!(global.ty.content_type, wasmparser::ValType::Ref(_)) {
                        compiled.reinstantiable = false;
                    }
                    compiled.wasm_instructions += global.init_expr.get_operators_reader().into_iter().count() as u64;
                }
            }
            Payload::CodeSectionEntry(body) => {
                let ops = body.get_operators_reader().map_err(|e| e.to_string())?;
                for op in ops {
                    compiled.wasm_instructions += 1;
                    if matches!(
                        op,
                        Ok(Operator::TableSet { .. }
                            | Operator::TableGrow { .. }
                            | Operator::TableFill { .. }
                            | Operator::TableCopy { .. }
                            | Operator::TableInit { .. }
                            | Operator::ElemDrop { .. }
                            | Operator::MemoryInit { .. }
                            | Operator::DataDrop { .. })
                    ) {
                        compiled.reinstantiable = false;
                    }
                }
            }
            Payload::StartSection { func, .. } => {
                start = Some(*func);
                compiled.has_start = true;
            }
            Payload::CustomSection(c) if c.name().starts_with("icp:") => {
                compiled.enhanced_orthogonal_persistence |= c.name() == EOP_SECTION;
                add_metadata(&mut compiled.metadata, c.name(), c.data())?;
            }
            Payload::ExportSection(reader) => {
                let mut section = wasm_encoder::ExportSection::new();
                for export in reader.clone() {
                    let export = export.map_err(|e| e.to_string())?;
                    let kind = match export.kind {
                        ExternalKind::Func => wasm_encoder::ExportKind::Func,
                        ExternalKind::Table => wasm_encoder::ExportKind::Table,
                        ExternalKind::Memory => {
                            exported_memories += 1;
                            wasm_encoder::ExportKind::Memory
                        }
                        ExternalKind::Global => wasm_encoder::ExportKind::Global,
                        ExternalKind::Tag => wasm_encoder::ExportKind::Tag,
                    };
                    section.export(export.name, kind, export.index);
                    if export.kind == ExternalKind::Func {
                        classify_export(&mut compiled, export.name)?;
                    }
                }
                export_section = Some(section);
                continue;
            }
            _ => {}
        }
        let Some((id, range)) = payload.as_section() else {
            continue;
        };
        // Sections that come after the export section in a module: start (8), element (9), data count (12),
        // code (10), data (11).
        if matches!(id, 8..=12) && !export_inserted {
            let mut section = export_section.take().unwrap_or_default();
            extra_exports(&compiled, start, &mut section);
            out.section(&section);
            export_inserted = true;
        }
        if id == 8 {
            continue; // The start function is exported instead and run by the replica as `(start)`.
        }
        out.section(&wasm_encoder::RawSection { id, data: &raw[range] });
    }
    if !export_inserted {
        let mut section = export_section.take().unwrap_or_default();
        extra_exports(&compiled, start, &mut section);
        out.section(&section);
    }
    if memories > 1 {
        return Err("Wasm module has an invalid memory section. The module defines more than one memory.".into());
    }
    if exported_memories > 1 {
        return Err("Wasm module has an invalid export section. Exporting more than one memory is not allowed.".into());
    }
    compiled.module = wasmi::Module::new(engine, out.finish()).map_err(|e| format!("Wasm module is not valid: {e}"))?;
    Ok(compiled)
}

/// The import section: the `ic0` functions, then the memory as an import.
fn import_section(functions: &[(&str, u32)], memory: Option<(u32, Option<u32>)>) -> wasm_encoder::ImportSection {
    let mut section = wasm_encoder::ImportSection::new();
    for (name, ty) in functions {
        section.import("ic0", name, wasm_encoder::EntityType::Function(*ty));
    }
    if let Some((minimum, maximum)) = memory {
        let ty = wasm_encoder::MemoryType {
            minimum: minimum.into(),
            maximum: maximum.map(u64::from),
            memory64: false,
            shared: false,
            page_size_log2: None,
        };
        section.import(MEMORY_IMPORT.0, MEMORY_IMPORT.1, wasm_encoder::EntityType::Memory(ty));
    }
    section
}

/// Records an `icp:public <name>` / `icp:private <name>` section, within the spec's limits.
fn add_metadata(metadata: &mut BTreeMap<String, Metadata>, section: &str, data: &[u8]) -> Result<(), String> {
    let invalid = |why: String| format!("Wasm module has an invalid custom section: {why}");
    let (public, name) = if let Some(name) = section.strip_prefix("icp:public ") {
        (true, name)
    } else if let Some(name) = section.strip_prefix("icp:private ") {
        (false, name)
    } else {
        return Err(invalid(format!(
            "'{section}' must be 'icp:public <name>' or 'icp:private <name>'"
        )));
    };
    if metadata
        .insert(
            name.to_string(),
            Metadata {
                public,
                content: data.to_vec(),
            },
        )
        .is_some()
    {
        return Err(invalid(format!("the name '{name}' is used by more than one section")));
    }
    let bytes: usize = metadata.iter().map(|(n, m)| n.len() + m.content.len()).sum();
    if metadata.len() > MAX_METADATA_SECTIONS || bytes > MAX_METADATA_BYTES {
        return Err(invalid(format!(
            "at most {MAX_METADATA_SECTIONS} sections of at most {MAX_METADATA_BYTES} bytes in all are allowed"
        )));
    }
    Ok(())
}

/// Spec "Entry points": the only `canister_`-prefixed exports the IC accepts.
fn classify_export(c: &mut CompiledModule, name: &str) -> Result<(), String> {
    let duplicate = |m: &str| {
        format!(
            "Wasm module has an invalid export section. Duplicate function '{m}' exported multiple times with different call types: update, query, or composite_query."
        )
    };
    let (set, method) = if let Some(m) = name.strip_prefix("canister_update ") {
        (&mut c.updates, m)
    } else if let Some(m) = name.strip_prefix("canister_query ") {
        (&mut c.queries, m)
    } else if let Some(m) = name.strip_prefix("canister_composite_query ") {
        (&mut c.composite_queries, m)
    } else if SYSTEM_EXPORTS.contains(&name) {
        c.system_exports.insert(name.to_string());
        return Ok(());
    } else if name.starts_with("canister_") {
        return Err(format!(
            "Wasm module has an invalid export section. Exporting reserved function '{name}' with \"canister_\" prefix"
        ));
    } else {
        return Ok(());
    };
    set.insert(method.to_string());
    let count = [&c.updates, &c.queries, &c.composite_queries]
        .iter()
        .filter(|s| s.contains(method))
        .count();
    if count > 1 {
        return Err(duplicate(method));
    }
    Ok(())
}
