//! placeholder
/// Runs the benchmark suite (filled in below).
pub async fn main(_args: &[String]) -> Result<bool, String> {
    Err("bench: not built yet".into())
}
