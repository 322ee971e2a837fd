//! What instances read back from the shared store (Redis): identity and license JSON, and
//! the identity's embeddings put into a vector index and searched.
#![no_main]
use libfuzzer_sys::fuzz_target;
use likeguard::config::SearchConfig;
use likeguard::registry::VectorIndex;

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<likeguard::license::License>(data);
    let Ok(identity) = serde_json::from_slice::<likeguard::registry::Identity>(data) else {
        return;
    };
    let mut index = VectorIndex::new(&SearchConfig::default());
    let items: Vec<(u64, &[f32])> = identity
        .embeddings
        .iter()
        .enumerate()
        .map(|(i, e)| (i as u64, e.as_slice()))
        .collect();
    let _ = index.insert_many(&items);
    if let Some(q) = identity.embeddings.first() {
        let _ = index.search(q, 3);
    }
    for (k, _) in &items {
        index.remove(*k);
    }
});
