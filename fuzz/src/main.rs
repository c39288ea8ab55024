//! One AFL++ harness for every jitgate fuzz target; the target is named on
//! the command line (`jitgate-fuzz jws`), so one instrumented build serves all.
//! The targets themselves live in `jitgate::fuzzing`.

fn main() {
    let name = std::env::args().nth(1).unwrap_or_default();
    let Some((_, run)) = jitgate::fuzzing::TARGETS.iter().find(|(n, _)| *n == name) else {
        let names: Vec<&str> = jitgate::fuzzing::TARGETS.iter().map(|(n, _)| *n).collect();
        eprintln!("usage: jitgate-fuzz TARGET (one of: {})", names.join(", "));
        std::process::exit(2);
    };
    afl::fuzz!(|data: &[u8]| {
        let _ = run(data);
    });
}
