//! The `vtd-nest` binary: everything is in the library ([`vtd_nest::main_with`]).

fn main() {
    // Input never panics by design; should a bug panic anyway, say so in one line
    // instead of a backtrace.
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown".into());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!("error: internal error (a bug in vtd-nest, please report it): {msg}{at}");
    }));
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr().lock();
    let code = vtd_nest::main_with(std::env::args_os(), &mut out, &mut err);
    drop(out);
    std::process::exit(code);
}
