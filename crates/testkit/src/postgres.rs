//! A throwaway PostgreSQL cluster.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::{free_port, wait_until};

/// Where Debian's `postgresql` package puts the server programs (the version is found at run
/// time; `FERRY_TEST_PG_BIN` names another folder).
const DEBIAN_PG: &str = "/usr/lib/postgresql";

/// A PostgreSQL cluster in a temporary folder, serving on a loopback port; stopped
/// (`pg_ctl stop -m immediate`) and removed when dropped.
pub struct Postgres {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    /// The user the server runs as, when the tests run as root.
    run_as: Option<String>,
    _dir: tempfile::TempDir,
}

impl Postgres {
    /// Creates and starts a cluster with trust authentication on 127.0.0.1 (nothing else
    /// can reach it) and a database `ferry`.
    pub fn start() -> Postgres {
        let bin = pg_bin();
        let dir = tempfile::Builder::new()
            .prefix("ferry-pg-")
            .tempdir()
            .expect("temporary folder for PostgreSQL");
        let run_as = is_root().then(|| "postgres".to_string());
        if run_as.is_some() {
            // The server's user must own its folder (and reach it).
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("chown");
            assert!(status.success(), "chown the PostgreSQL folder to postgres");
        }
        let data = dir.path().join("data");
        let port = free_port();
        let pg = Postgres {
            bin,
            data,
            port,
            run_as,
            _dir: dir,
        };
        pg.run(
            "initdb",
            &[
                "-D",
                &pg.data.to_string_lossy(),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        let opts = format!(
            "-p {port} -h 127.0.0.1 -k {} -c fsync=off -c max_connections=200 -c shared_buffers=64MB",
            pg.data.parent().unwrap().display()
        );
        pg.run(
            "pg_ctl",
            &[
                "-D",
                &pg.data.to_string_lossy(),
                "-o",
                &opts,
                "-l",
                &pg.data.parent().unwrap().join("log").to_string_lossy(),
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
        wait_until("PostgreSQL", Duration::from_secs(60), || {
            Command::new(pg.bin.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &port.to_string()])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
        pg.run(
            "createdb",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                "postgres",
                "ferry",
            ],
        );
        pg
    }

    /// One cluster for the whole test process, started on first use; each test makes its own
    /// database in it ([`Postgres::create_database`], or [`Postgres::fresh_database`]). A
    /// watcher process stops the cluster and removes its folder once the test process has
    /// exited (statics are never dropped).
    pub fn shared() -> &'static Postgres {
        static SHARED: std::sync::OnceLock<Postgres> = std::sync::OnceLock::new();
        SHARED.get_or_init(|| {
            let pg = Postgres::start();
            let stop = format!(
                "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; {runas}{pg_ctl} -D {data} -m immediate stop >/dev/null 2>&1; rm -rf {dir}",
                pid = std::process::id(),
                runas = if pg.run_as.is_some() { "runuser -u postgres -- " } else { "" },
                pg_ctl = pg.bin.join("pg_ctl").display(),
                data = pg.data.display(),
                dir = pg._dir.path().display(),
            );
            // Not waited for: it outlives this process on purpose.
            #[allow(clippy::zombie_processes)]
            let _ = Command::new("sh")
                .args(["-c", &stop])
                .current_dir("/")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start the PostgreSQL watcher");
            pg
        })
    }

    /// A new empty database with a unique name; returns its URL.
    pub fn fresh_database(&self) -> String {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "t{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        self.create_database(&name)
    }

    /// The connection URL of database `ferry`.
    pub fn url(&self) -> String {
        self.url_of("ferry")
    }

    /// The connection URL of another database of this cluster.
    pub fn url_of(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Creates another empty database (one per test keeps tests apart) and returns its URL.
    pub fn create_database(&self, name: &str) -> String {
        self.run(
            "createdb",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                name,
            ],
        );
        self.url_of(name)
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    fn run(&self, program: &str, args: &[&str]) {
        let path = self.bin.join(program);
        let mut cmd = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&path);
                c
            }
            None => Command::new(&path),
        };
        // The server's user may not be able to enter the test's working folder.
        cmd.current_dir("/");
        let out = cmd
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", path.display()));
        assert!(
            out.status.success(),
            "{} {args:?} failed: {}{}",
            path.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let path = self.bin.join("pg_ctl");
        let mut cmd = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&path);
                c
            }
            None => Command::new(&path),
        };
        let _ = cmd
            .current_dir("/")
            .args([
                "-D",
                &self.data.to_string_lossy(),
                "-m",
                "immediate",
                "stop",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn pg_bin() -> PathBuf {
    if let Some(dir) = std::env::var_os("FERRY_TEST_PG_BIN") {
        return PathBuf::from(dir);
    }
    let newest = std::fs::read_dir(DEBIAN_PG).ok().and_then(|entries| {
        entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .max()
    });
    match newest {
        Some(v)
            if Path::new(DEBIAN_PG)
                .join(v.to_string())
                .join("bin/initdb")
                .exists() =>
        {
            Path::new(DEBIAN_PG).join(v.to_string()).join("bin")
        }
        _ => panic!(
            "PostgreSQL's server programs are not installed ({DEBIAN_PG}/<version>/bin/initdb): \
             run `apt-get install -y postgresql` (scripts/test does) or set FERRY_TEST_PG_BIN"
        ),
    }
}
