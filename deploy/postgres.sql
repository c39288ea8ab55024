-- The role and database jitgate needs on PostgreSQL, run once by a
-- superuser (psql asks nothing; the password is not written to a file):
--
--   psql -h db.internal -U postgres -v ON_ERROR_STOP=1 \
--        -v role=jitgate -v db=jitgate -v password="$(cat /run/secrets/jitgate-db)" \
--        -f deploy/postgres.sql
--
-- jitgate owns its database's `public` schema: `jitgate serve` (or `jitgate
-- store migrate`) creates and migrates its tables, indexes, a trigger
-- function, and takes advisory locks. It needs no superuser, no CREATEDB,
-- no CREATEROLE, and no access to any other database.

CREATE ROLE :"role" LOGIN PASSWORD :'password' NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION;
CREATE DATABASE :"db" OWNER :"role" ENCODING 'UTF8' TEMPLATE template0;
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE :"db" TO :"role";

\connect :"db"
ALTER SCHEMA public OWNER TO :"role";
REVOKE ALL ON SCHEMA public FROM PUBLIC;
