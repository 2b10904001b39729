//! The command line: a bad setting is one line naming it, exit code 2.

#[tokio::test]
async fn a_store_url_of_another_database_is_one_line_naming_it() {
    let binary = env!("CARGO_BIN_EXE_historian");
    let line = test_support::expect_settings_error(binary, &["--store-url", "mysql://x"]).await;
    assert!(line.contains("`store.url`"), "{line}");
    let line = test_support::expect_settings_error(binary, &["--store-batch-size", "0"]).await;
    assert!(line.contains("`store.batch_size`"), "{line}");
}
