-- The local state as builds before schema versions wrote it (user_version 0), with a row in
-- each table that matters: the upgrade keeps them, and drops the skips of images that could
-- not be identified, which are now backed up.
CREATE TABLE IF NOT EXISTS files (
    path BLOB PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    digest TEXT NOT NULL,
    identifier TEXT,
    pixels INTEGER
);
CREATE INDEX IF NOT EXISTS files_digest ON files(digest);
CREATE TABLE IF NOT EXISTS synced (
    server TEXT NOT NULL,
    digest TEXT NOT NULL,
    identifier TEXT,
    remote_id INTEGER NOT NULL,
    how TEXT NOT NULL,
    at INTEGER NOT NULL,
    PRIMARY KEY (server, digest)
);
CREATE TABLE IF NOT EXISTS pending (
    server TEXT NOT NULL,
    digest TEXT NOT NULL,
    url TEXT NOT NULL,
    length INTEGER NOT NULL,
    offset_acked INTEGER NOT NULL,
    PRIMARY KEY (server, digest)
);
CREATE TABLE IF NOT EXISTS skips (
    path BLOB PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS matches (
    server TEXT NOT NULL,
    path BLOB NOT NULL,
    digest TEXT NOT NULL,
    remote_id INTEGER NOT NULL,
    remote_name TEXT NOT NULL,
    distance INTEGER NOT NULL,
    remote_pixels INTEGER,
    local_pixels INTEGER,
    at INTEGER NOT NULL,
    PRIMARY KEY (server, path)
);
CREATE TABLE IF NOT EXISTS forced (
    server TEXT NOT NULL,
    path BLOB NOT NULL,
    PRIMARY KEY (server, path)
);
CREATE TABLE IF NOT EXISTS settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
INSERT INTO files VALUES (X'2f70686f746f732f612e6a7067', 10, 5, 'abababababababababababababababababababababababababababababababab', NULL, 100);
INSERT INTO synced VALUES ('srv', 'abababababababababababababababababababababababababababababababab', NULL, 7, 'uploaded', 1);
INSERT INTO pending VALUES ('srv', 'cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd', 'http://x/files/1', 20, 4);
INSERT INTO skips VALUES (X'2f70686f746f732f6261642e6a7067', 30, 6, 'corrupt jpeg');
