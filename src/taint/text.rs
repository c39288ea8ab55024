//! Text as the ledger compares it: normalized words, numbers in every written form, destinations.

#[allow(unused_imports)]
use super::*;

/// Text as people read it, so that a value written one way in third-party
/// content and another way in an argument still matches: HTML character
/// references decoded (`&#46;` is `.`), compatibility forms folded (NFKD:
/// fullwidth digits, ligatures), accents dropped (`Hôtel` is `hotel`),
/// invisible format characters removed (zero-width spaces, soft hyphens,
/// direction marks), lowercased.
pub fn normalize(text: &str) -> String {
    use unicode_normalization::UnicodeNormalization as _;
    use unicode_normalization::char::is_combining_mark;
    decode_entities(text)
        .nfkd()
        .filter(|c| !is_combining_mark(*c) && !is_invisible(*c))
        .flat_map(char::to_lowercase)
        .collect()
}

/// Format characters that change nothing a reader sees.
pub(in crate::taint) fn is_invisible(c: char) -> bool {
    matches!(c, '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}' | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{206F}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}' | '\u{E0000}'..='\u{E007F}')
}

/// HTML character references: numeric ones and the few named ones that
/// could hide punctuation in an address or a name.
pub(in crate::taint) fn decode_entities(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains('&') {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let end = tail.char_indices().take(12).find(|(_, c)| *c == ';').map(|(j, _)| j);
        let decoded = end.and_then(|j| {
            let name = &tail[1..j];
            let c = if let Some(hex) = name.strip_prefix("#x").or_else(|| name.strip_prefix("#X")) {
                u32::from_str_radix(hex, 16).ok().and_then(char::from_u32)
            } else if let Some(dec) = name.strip_prefix('#') {
                dec.parse::<u32>().ok().and_then(char::from_u32)
            } else {
                match name {
                    "amp" => Some('&'),
                    "lt" => Some('<'),
                    "gt" => Some('>'),
                    "quot" => Some('"'),
                    "apos" => Some('\''),
                    "nbsp" => Some(' '),
                    "period" => Some('.'),
                    "commat" => Some('@'),
                    "sol" => Some('/'),
                    "colon" => Some(':'),
                    _ => None,
                }
            };
            c.map(|c| (c, j))
        });
        match decoded {
            Some((c, j)) => {
                out.push(c);
                rest = &tail[j + 1..];
            }
            None => {
                out.push('&');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    std::borrow::Cow::Owned(out)
}

/// Letters and digits, normalized, as words; `&` reads as "and".
pub(in crate::taint) fn words(text: &str) -> impl Iterator<Item = String> {
    let normal = normalize(text).replace('&', " and ");
    normal.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_owned).collect::<Vec<_>>().into_iter()
}

/// Letters and digits only: an account number however it was grouped
/// (`NL91 ABNA 0417`, `NL91-ABNA-0417`, `nl91abna0417`).
pub(in crate::taint) fn compact(text: &str) -> String {
    text.chars().filter(|c| c.is_alphanumeric()).collect()
}

pub(in crate::taint) fn digits(text: &str) -> usize {
    text.chars().filter(char::is_ascii_digit).count()
}

/// A sensitive argument as the phrase looked up in passages (` w1 w2 `), if
/// it is short enough to be a name rather than free text.
pub(in crate::taint) fn phrase_of(text: &str) -> Option<String> {
    let ws: Vec<String> = words(text).collect();
    let chars: usize = ws.iter().map(|w| w.chars().count()).sum();
    (!ws.is_empty() && ws.len() <= MAX_PHRASE_WORDS && chars >= MIN_PHRASE_CHARS).then(|| format!(" {} ", ws.join(" ")))
}

/// Text with its dates and times (`2027-05-12`, `09:00`, `18:30:00`) blanked:
/// an event's start is not an account or phone number, however many digits
/// a date and a time make together.
pub(in crate::taint) fn without_dates(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let digit = |i: usize| chars.get(i).is_some_and(char::is_ascii_digit);
    let at = |i: usize, c: char| chars.get(i) == Some(&c);
    let number = |i: usize, n: usize| chars[i..i + n].iter().filter_map(|c| c.to_digit(10)).fold(0u32, |a, d| a * 10 + d);
    // A digit group joined to this one (`+44-1234-…`, `…-12-34`) makes a
    // phone or account number, not a date.
    let joined_before = |i: usize| i > 0 && (matches!(chars[i - 1], '+' | '-' | '.' | '/') || chars[i - 1].is_alphanumeric());
    let joined_after = |j: usize| matches!(chars.get(j), Some('-' | '.' | '/' | '+')) && digit(j + 1) || digit(j);
    let mut out = chars.clone();
    let mut i = 0;
    while i < chars.len() {
        let shaped = !joined_before(i) && (0..4).all(|k| digit(i + k)) && at(i + 4, '-') && digit(i + 5) && digit(i + 6) && at(i + 7, '-') && digit(i + 8) && digit(i + 9);
        let date = shaped && (1..=12).contains(&number(i + 5, 2)) && (1..=31).contains(&number(i + 8, 2)) && !joined_after(i + 10);
        let time_len = if at(i + 5, ':') && digit(i + 6) && digit(i + 7) { 8 } else { 5 };
        let time = !joined_before(i)
            && digit(i)
            && digit(i + 1)
            && at(i + 2, ':')
            && digit(i + 3)
            && digit(i + 4)
            && number(i, 2) <= 23
            && number(i + 3, 2) <= 59
            && !joined_after(i + time_len);
        let len = if date { 10 } else if time { time_len } else { 0 };
        for c in out.iter_mut().skip(i).take(len) {
            *c = ' ';
        }
        i += len.max(1);
    }
    out.into_iter().collect()
}

/// Where something could be sent or paid: a URL or a link without its
/// scheme (`www.site.test`, `site.test/login`), an e-mail address, an IBAN,
/// an account or phone number (nine digits or more). A payment reference
/// (`EL-2026-12`) or a file name is not one.
pub(in crate::taint) fn is_destination(token: &str) -> bool {
    if token.starts_with(NUMBER_KEY) {
        return false;
    }
    let packed = compact(token);
    let iban = packed.len() >= 14 && packed.len() <= MAX_ACCOUNT_CHARS && packed.chars().take(2).all(|c| c.is_ascii_lowercase()) && packed.chars().skip(2).take(2).all(|c| c.is_ascii_digit());
    let host_with_path = token.split_once('/').is_some_and(|(host, _)| host.contains('.') && !host.starts_with('.') && host.rsplit('.').next().is_some_and(|tld| tld.len() >= 2 && tld.chars().all(|c| c.is_ascii_alphabetic())));
    token.contains("://") || token.starts_with("www.") || is_email(token) || iban || host_with_path || digits(token) >= 9
}

/// An amount without its currency: a symbol, or a code of up to three
/// letters, before or after it (`EUR 1.250,00`, `140.00 eur`, `$99`).
pub(in crate::taint) fn without_currency(text: &str) -> &str {
    let symbols = |c: char| matches!(c, '+' | '$' | '€' | '£' | '¥' | ' ' | ':');
    let mut t = text.trim_matches(symbols);
    // A currency code has three letters (two letters and digits begin an IBAN).
    let front: usize = t.chars().take_while(|c| c.is_alphabetic()).map(char::len_utf8).sum();
    if matches!(t[..front].chars().count(), 0 | 3) {
        t = t[front..].trim_start_matches(symbols);
    }
    let back: usize = t.chars().rev().take_while(|c| c.is_alphabetic()).map(char::len_utf8).sum();
    if matches!(t[t.len() - back..].chars().count(), 0 | 3) {
        t = t[..t.len() - back].trim_end_matches(symbols);
    }
    t.trim_end_matches('.')
}

/// Characters that group digits or mark decimals in how people write
/// amounts (after [`normalize`], which turns no-break and thin spaces into
/// spaces): `1,250.00`, `1.250,00`, `1'250.00`, `1 250,00`.
pub(in crate::taint) fn is_number_separator(c: char) -> bool {
    matches!(c, ',' | '.' | '\'' | ' ' | '\u{2019}' | '\u{02BC}' | '\u{2032}' | '\u{066C}' | '\u{066B}')
}

/// A JSON number's ledger key: its value in canonical decimal.
pub(in crate::taint) fn json_number_key(n: &serde_json::Number) -> Option<String> {
    let text = if let Some(i) = n.as_i64() {
        i.to_string()
    } else if let Some(u) = n.as_u64() {
        u.to_string()
    } else {
        // Rust prints an f64 in plain decimal, never with an exponent.
        format!("{}", n.as_f64()?)
    };
    let (int, frac) = text.trim_start_matches('-').split_once('.').unwrap_or((text.trim_start_matches('-'), ""));
    canonical_number(int, frac)
}

/// `int.frac` without leading or trailing zeros, as a ledger key; None for
/// a single digit (a "3" on a page would taint every 3 in an argument).
pub(in crate::taint) fn canonical_number(int: &str, frac: &str) -> Option<String> {
    let int = int.trim_start_matches('0');
    let frac = frac.trim_end_matches('0');
    let int = if int.is_empty() { "0" } else { int };
    if int.len() + frac.len() < 2 || int.len() > 40 || frac.len() > 20 {
        return None;
    }
    Some(if frac.is_empty() { format!("{NUMBER_KEY}{int}") } else { format!("{NUMBER_KEY}{int}.{frac}") })
}

/// The numbers a run of digits and separators can mean, as ledger keys.
/// Either mark can be the decimal one; grouping is in threes; where it is
/// ambiguous (`1,250`), both readings are kept. Anything else is read as
/// its digit groups, each on its own.
pub(in crate::taint) fn number_keys(run: &str) -> Vec<String> {
    let run = run.trim_matches(|c: char| !c.is_ascii_digit());
    let mut groups: Vec<&str> = Vec::new();
    let mut seps: Vec<char> = Vec::new();
    let mut rest = run;
    while !rest.is_empty() {
        let end = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        groups.push(&rest[..end]);
        rest = &rest[end..];
        if let Some(sep) = rest.chars().next() {
            seps.push(sep);
            rest = &rest[sep.len_utf8()..];
            if !rest.starts_with(|c: char| c.is_ascii_digit()) {
                // Two separators in a row end the number.
                break;
            }
        }
    }
    // In threes (`1,250,000`), or the Indian way: threes last, twos before
    // (`1,25,000`).
    let grouped = |gs: &[&str], sep: Option<char>| {
        let threes = gs.iter().skip(1).all(|g| g.len() == 3);
        let indian = gs.len() >= 3 && gs.last().is_some_and(|g| g.len() == 3) && gs[1..gs.len() - 1].iter().all(|g| g.len() == 2);
        gs.first().is_some_and(|g| (1..=3).contains(&g.len()))
            && (threes || indian)
            && sep.is_some_and(|s| seps.iter().take(gs.len() - 1).all(|x| *x == s))
    };
    let mut out = Vec::new();
    match groups.len() {
        0 => {}
        1 => out.extend(canonical_number(groups[0], "")),
        n => {
            // Every separator groups: an integer.
            if grouped(&groups, seps.first().copied()) {
                out.extend(canonical_number(&groups.concat(), ""));
            }
            // The last separator is the decimal mark, the others group.
            let mark = seps[n - 2];
            let before = &groups[..n - 1];
            let grouping_ok = before.len() == 1 || grouped(before, seps.first().copied().filter(|s| *s != mark));
            if matches!(mark, ',' | '.' | '\u{066B}') && grouping_ok {
                out.extend(canonical_number(&before.concat(), groups[n - 1]));
            }
            // A space may group digits or part two numbers ("2 300"): both.
            if out.is_empty() || seps.contains(&' ') {
                out.extend(groups.iter().filter_map(|g| canonical_number(g, "")));
            }
        }
    }
    out
}

/// The numbers in third-party text, as ledger keys. Runs of digits and
/// separators never span a line or a field.
pub(in crate::taint) fn numbers_in(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.split(['\n', '\r']) {
        let mut start = None;
        let mut previous = ' ';
        // Letters just before the current position, and what came before them.
        let (mut letters, mut before_letters) = (0usize, ' ');
        for (i, c) in line.char_indices() {
            // A number stands on its own: the digits in `club1234` or
            // `m1x2` are part of a name, not an amount; after a currency
            // code of up to three letters (`EUR1250`, `Rs1,25,000`) they are.
            // (Exactly three letters, or "rs": two letters and digits are
            // an IBAN's country and check digits, not a currency.)
            let after_code = previous.is_alphabetic() && (letters == 3 || line[..i].ends_with("rs")) && !(before_letters.is_alphanumeric() || before_letters == '_');
            let part = (c.is_ascii_digit() && (start.is_some() || after_code || !(previous.is_alphanumeric() || previous == '_'))) || (start.is_some() && is_number_separator(c));
            if c.is_alphabetic() {
                if !previous.is_alphabetic() {
                    before_letters = previous;
                    letters = 0;
                }
                letters += 1;
            }
            previous = c;
            match (part, start) {
                (true, None) => start = Some(i),
                (false, Some(s)) => {
                    out.extend(number_keys(&line[s..i]));
                    start = None;
                }
                _ => {}
            }
        }
        if let Some(s) = start {
            out.extend(number_keys(&line[s..]));
        }
    }
    out
}
