//! `procgate wake TYPE`: wake a sleeping type now (`sleep_after`), as its next client would;
//! prints the instances it starts and returns once the first is in routing (`ok: tcp woke after
//! 412 ms`); a type awake is left as it is (`ok: tcp is awake`).

use crate::cli::WakeArgs;
use crate::control::WakeRequest;

pub fn run(args: WakeArgs) -> anyhow::Result<i32> {
    let body = serde_json::to_string(&WakeRequest { type_name: args.type_name })?;
    super::roll::roll(&args.root.root, "/wake", body)
}
