//! Compiles the XDP program with clang (Debian: `apt-get install clang
//! libbpf-dev`) so that the object is embedded in the binary.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let object = out.join("steer.bpf.o");
    for f in ["src/steer.bpf.c", "include/ticklane_xdp.h"] {
        println!("cargo:rerun-if-changed={f}");
    }
    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang".into());
    let status = Command::new(&clang)
        .args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror"])
        .args(["-I/usr/include/x86_64-linux-gnu", "-Iinclude"])
        .args(["-c", "src/steer.bpf.c", "-o"])
        .arg(&object)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("{clang} failed to compile the XDP program ({s})"),
        Err(e) => panic!(
            "cannot run {clang} ({e}): the XDP program is C compiled with clang; \
             install it with `apt-get install clang libbpf-dev`"
        ),
    }
}
