//! Face embedders: aligned crops in, L2-normalised vectors out.

use ort::session::Session;
use ort::value::TensorRef;

use super::InferenceError;
use super::batcher::Model;

/// An L2-normalised face embedding. Compare two with `cosine`.
#[derive(Clone, PartialEq)]
pub struct Embedding(Box<[f32]>);

impl Embedding {
    /// Normalises `v` to unit length; `None` for a zero or non-finite vector.
    pub fn normalised(v: &[f32]) -> Option<Self> {
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        (norm.is_finite() && norm > 0.0).then(|| Self(v.iter().map(|x| x / norm).collect()))
    }

    pub fn as_slice(&self) -> &[f32] {
        &self.0
    }

    /// Cosine similarity (both are unit vectors: the dot product).
    pub fn cosine(&self, other: &Embedding) -> f32 {
        self.0.iter().zip(other.0.iter()).map(|(a, b)| a * b).sum()
    }
}

/// Embeddings are personal data: never print their values.
impl std::fmt::Debug for Embedding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Embedding({} dims)", self.0.len())
    }
}

/// An embedder session with a dynamic batch dimension.
pub struct Embedder {
    session: Session,
    size: usize,
    dim: usize,
    input: String,
    output: String,
    max_batch: usize,
}

impl Embedder {
    pub fn new(
        session: Session,
        size: usize,
        dim: usize,
        names: [String; 2],
        max_batch: usize,
    ) -> Self {
        let [input, output] = names;
        Self {
            session,
            size,
            dim,
            input,
            output,
            max_batch,
        }
    }
}

impl Model for Embedder {
    type Output = Embedding;

    fn item_len(&self) -> usize {
        3 * self.size * self.size
    }

    fn max_batch(&self) -> usize {
        self.max_batch
    }

    fn run(
        &mut self,
        input: &[f32],
        n: usize,
        out: &mut Vec<Embedding>,
    ) -> Result<(), InferenceError> {
        let fail = |e: &dyn std::fmt::Display| InferenceError::Run {
            model: "embedder".into(),
            reason: e.to_string(),
        };
        let tensor = TensorRef::from_array_view((
            [n, 3, self.size, self.size],
            &input[..n * self.item_len()],
        ))
        .map_err(|e| fail(&e))?;
        let outputs = self
            .session
            .run(ort::inputs![self.input.as_str() => tensor])
            .map_err(|e| fail(&e))?;
        let (_, values) = outputs[self.output.as_str()]
            .try_extract_tensor::<f32>()
            .map_err(|e| fail(&e))?;
        if values.len() != n * self.dim {
            return Err(fail(&format!(
                "{} values for {n} faces of {} dims",
                values.len(),
                self.dim
            )));
        }
        for v in values.chunks_exact(self.dim) {
            out.push(
                Embedding::normalised(v).ok_or_else(|| fail(&"embedding is zero or not finite"))?,
            );
        }
        Ok(())
    }
}
