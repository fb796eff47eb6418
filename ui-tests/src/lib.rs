//! trybuild cases for `#[derive(Topic)]`: `tests/ui/fail/<area>/<mistake>.rs` must fail to
//! compile with the error in the `.stderr` beside it; `tests/ui/pass/*.rs` must compile and
//! run. Bless changed messages with `TRYBUILD=overwrite cargo test -p ui-tests`, then
//! review the `.stderr` diff by eye.
