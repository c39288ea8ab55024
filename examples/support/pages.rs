//! Untrusted pages for measurements with a full taint ledger (the taint
//! bench and `loadgen --ledger-pages`): about 16 KB of words each, different
//! on every page, and one address.

use rmcp::model::{CallToolResult, ContentBlock};

/// Words of letters only, different on every page.
pub fn word(n: usize) -> String {
    (0..5).map(|i| char::from(b'a' + (n / 26usize.pow(i) % 26) as u8)).collect()
}

/// Page `n`: 2,700 words and one address.
pub fn page(n: usize) -> CallToolResult {
    let text: Vec<String> = (0..2700).map(|w| word(n * 2700 + w)).collect();
    CallToolResult::success(vec![ContentBlock::text(format!("{} write to someone{n}@elsewhere{n}.example", text.join(" ")))])
}
