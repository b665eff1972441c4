-- Schema version 1, before the exact bytes of file names, with a little data: two users, an
-- image of Alice's and her unfinished upload of "abc".
CREATE TABLE users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    token_hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    quota INTEGER,
    next_image INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE uploads (
    id TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    length INTEGER NOT NULL,
    received INTEGER NOT NULL,
    metadata TEXT NOT NULL,
    name TEXT NOT NULL,
    declared TEXT,
    verified TEXT,
    mtime INTEGER,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    image_id INTEGER,
    lock_holder TEXT,
    lock_until INTEGER
);
CREATE INDEX uploads_expiry ON uploads(expires_at);
CREATE INDEX uploads_user ON uploads(user_id, image_id);
CREATE INDEX uploads_verified ON uploads(verified) WHERE verified IS NOT NULL;
CREATE TABLE images (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    number INTEGER NOT NULL,
    digest TEXT NOT NULL,
    identifier TEXT,
    name TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    width INTEGER,
    height INTEGER,
    format TEXT,
    mtime INTEGER,
    uploaded_at INTEGER NOT NULL,
    UNIQUE (user_id, digest),
    UNIQUE (user_id, number)
);
CREATE INDEX images_digest ON images(digest);
CREATE TABLE blobs (
    digest TEXT PRIMARY KEY,
    doomed INTEGER NOT NULL DEFAULT 0
);
-- The test puts the BLAKE3 hashes of the tokens in place of ALICE_HASH and BOB_HASH, and that
-- of "abc" in place of ABC_DIGEST.
INSERT INTO users VALUES (1, 'alice', 'ALICE_HASH', 0, NULL, 1);
INSERT INTO users VALUES (2, 'bob', 'BOB_HASH', 0, NULL, 0);
INSERT INTO images VALUES (1, 1, 1, 'aa00000000000000000000000000000000000000000000000000000000000000', NULL, 'a.jpg', 3, NULL, NULL, NULL, NULL, 0);
INSERT INTO blobs VALUES ('aa00000000000000000000000000000000000000000000000000000000000000', 0);
INSERT INTO uploads VALUES ('0123456789abcdef0123456789abcdef', 1, 3, 0, '', 'c.jpg', 'ABC_DIGEST', NULL, NULL, 0, 4000000000, NULL, NULL, NULL);
PRAGMA user_version = 1;
