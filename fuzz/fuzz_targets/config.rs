//! The config loader: any text given as the config file is loaded or refused with a located
//! error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stack_exporter::config;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Err(error) = config::load_str(Some(("fuzz.toml", &text))) {
        let _ = error.to_string();
    }
    let _ = config::parse_size(&text);
    let _ = config::parse_duration(&text);
});
