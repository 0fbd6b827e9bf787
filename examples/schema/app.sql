-- An example schema for a typical web application on a pgsteady server: users, posts,
-- comments and tags, with full-text search, trigram search, the indexes such an
-- application needs and updated_at kept current by a trigger.
--
-- Runs as the application's role (never as a superuser) and is idempotent, as a
-- pgsteady schema file must be: apply it any number of times. It uses only what pgsteady
-- creates: the pg_trgm extension (postgres_extensions) and pgsteady.set_updated_at().

-- Users. Emails are unique whatever their case; soft-deleted rows keep their row.
CREATE TABLE IF NOT EXISTS users (
  id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  email        text NOT NULL CHECK (email LIKE '%_@_%'),
  username     text NOT NULL CHECK (username ~ '^[A-Za-z0-9_]{3,32}$'),
  display_name text NOT NULL DEFAULT '',
  created_at   timestamptz NOT NULL DEFAULT now(),
  updated_at   timestamptz NOT NULL DEFAULT now(),
  deleted_at   timestamptz
);
CREATE UNIQUE INDEX IF NOT EXISTS users_email_key ON users (lower(email));
CREATE UNIQUE INDEX IF NOT EXISTS users_username_key ON users (lower(username));
-- "find people": trigram similarity / ILIKE '%part%' on names, live users only
CREATE INDEX IF NOT EXISTS users_display_name_trgm ON users
  USING gin (display_name gin_trgm_ops) WHERE deleted_at IS NULL;
CREATE INDEX IF NOT EXISTS users_created_at ON users (created_at DESC);

-- Posts: the document the full-text search reads. The tsvector is a stored generated
-- column (weights: title A, body B), so it can never be stale and needs no trigger.
CREATE TABLE IF NOT EXISTS posts (
  id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  author_id    bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  title        text NOT NULL,
  slug         text NOT NULL CHECK (slug ~ '^[a-z0-9-]+$'),
  body         text NOT NULL DEFAULT '',
  status       text NOT NULL DEFAULT 'draft' CHECK (status IN ('draft', 'published')),
  published_at timestamptz,
  created_at   timestamptz NOT NULL DEFAULT now(),
  updated_at   timestamptz NOT NULL DEFAULT now(),
  search       tsvector GENERATED ALWAYS AS (
                 setweight(to_tsvector('english'::regconfig, coalesce(title, '')), 'A') ||
                 setweight(to_tsvector('english'::regconfig, coalesce(body, '')), 'B')
               ) STORED,
  CHECK (status = 'draft' OR published_at IS NOT NULL)
);
CREATE UNIQUE INDEX IF NOT EXISTS posts_slug_key ON posts (slug);
-- the foreign key, and "an author's posts, newest first", in one index
CREATE INDEX IF NOT EXISTS posts_author_created ON posts (author_id, created_at DESC);
-- the front page: published posts, newest first (drafts never enter this index)
CREATE INDEX IF NOT EXISTS posts_published ON posts (published_at DESC)
  WHERE status = 'published';
-- full-text search: WHERE search @@ websearch_to_tsquery('english', $1)
CREATE INDEX IF NOT EXISTS posts_search ON posts USING gin (search);
-- fuzzy title search: WHERE title % $1 (similarity) or title ILIKE '%' || $1 || '%'
CREATE INDEX IF NOT EXISTS posts_title_trgm ON posts USING gin (title gin_trgm_ops);

-- Comments on posts: both foreign keys indexed (deleting a user or a post must not scan).
CREATE TABLE IF NOT EXISTS comments (
  id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  post_id    bigint NOT NULL REFERENCES posts (id) ON DELETE CASCADE,
  author_id  bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  body       text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS comments_post_created ON comments (post_id, created_at);
CREATE INDEX IF NOT EXISTS comments_author ON comments (author_id);

-- Tags, many-to-many with posts. The primary key (post_id, tag_id) serves "tags of a
-- post"; the index on tag_id serves "posts with a tag" and the foreign key.
CREATE TABLE IF NOT EXISTS tags (
  id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name text NOT NULL CHECK (name = lower(name) AND length(name) BETWEEN 1 AND 64)
);
CREATE UNIQUE INDEX IF NOT EXISTS tags_name_key ON tags (name);
CREATE INDEX IF NOT EXISTS tags_name_trgm ON tags USING gin (name gin_trgm_ops);

CREATE TABLE IF NOT EXISTS post_tags (
  post_id bigint NOT NULL REFERENCES posts (id) ON DELETE CASCADE,
  tag_id  bigint NOT NULL REFERENCES tags (id) ON DELETE CASCADE,
  PRIMARY KEY (post_id, tag_id)
);
CREATE INDEX IF NOT EXISTS post_tags_tag ON post_tags (tag_id);

-- updated_at: pgsteady's trigger function (owned by the superuser, in schema pgsteady,
-- which the application can use but not change). With postgres_auto_updated_at on,
-- pgsteady has already attached this very trigger; replacing it changes nothing.
CREATE OR REPLACE TRIGGER pgsteady_updated_at BEFORE UPDATE ON users
  FOR EACH ROW EXECUTE FUNCTION pgsteady.set_updated_at();
CREATE OR REPLACE TRIGGER pgsteady_updated_at BEFORE UPDATE ON posts
  FOR EACH ROW EXECUTE FUNCTION pgsteady.set_updated_at();
CREATE OR REPLACE TRIGGER pgsteady_updated_at BEFORE UPDATE ON comments
  FOR EACH ROW EXECUTE FUNCTION pgsteady.set_updated_at();
