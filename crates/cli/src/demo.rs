//! `ferry demo`: placeholder replaced below.
use crate::output::anyhow_like::Result;
pub fn run(_keep: bool) -> Result<()> {
    Ok(())
}
