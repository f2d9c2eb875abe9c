//! The servers start, answer, and go away when dropped.

use std::net::TcpStream;

#[test]
fn postgres_starts_answers_and_stops() {
    let pg = ferry_testkit::Postgres::start();
    let port = pg.port();
    assert!(pg.url().starts_with("postgres://postgres@127.0.0.1:"));
    assert!(TcpStream::connect(("127.0.0.1", port)).is_ok());
    let other = pg.create_database("second");
    assert!(other.ends_with("/second"), "{other}");
    drop(pg);
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err(), "stopped");
}

#[test]
fn s3_starts_makes_buckets_and_stops() {
    let s3 = ferry_testkit::S3::start();
    s3.create_bucket("ferry-testkit");
    let endpoint = s3.endpoint();
    let hostport = endpoint.trim_start_matches("http://").to_string();
    assert!(TcpStream::connect(&hostport).is_ok());
    drop(s3);
    assert!(TcpStream::connect(&hostport).is_err(), "stopped");
}
