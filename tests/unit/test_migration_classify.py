"""The classifier on a corpus of migrations shaped like the ones ``prisma migrate dev`` writes."""

from __future__ import annotations

import pytest

from ops.migrations.classify import DESTRUCTIVE, LOCKING, SAFE, Tables, classify
from ops.migrations.sql import split, unquote_ident

ROWS = {"User": 250_000, "Message": 2_000_000, "Upload": 12}

CORPUS = {
    # -- safe ------------------------------------------------------------------------
    "20240105093000_init": (SAFE, True, """
-- CreateEnum
CREATE TYPE "Role" AS ENUM ('ATHLETE', 'COACH', 'ADMIN');

-- CreateTable
CREATE TABLE "Team" (
    "id" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "Team_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE UNIQUE INDEX "Team_name_key" ON "Team"("name");

-- AddForeignKey
ALTER TABLE "Team" ADD CONSTRAINT "Team_ownerId_fkey" FOREIGN KEY ("ownerId") REFERENCES "User"("id") ON DELETE CASCADE ON UPDATE CASCADE;
"""),
    "20240320101500_add_message_read_at": (SAFE, True, """
-- AlterTable
ALTER TABLE "Upload" ADD COLUMN     "readAt" TIMESTAMP(3);

-- CreateIndex
CREATE INDEX "Upload_readAt_idx" ON "Upload"("readAt");
"""),
    "20240401000000_add_enum_value": (SAFE, True, """
-- AlterEnum
ALTER TYPE "Role" ADD VALUE 'PARENT';
"""),
    "20240402000000_optional_to_default": (SAFE, True, """
-- AlterTable
ALTER TABLE "User" ADD COLUMN     "locale" TEXT NOT NULL DEFAULT 'en',
ADD COLUMN     "bio" TEXT;
"""),
    "20240403000000_concurrent_index": (SAFE, True, """
CREATE INDEX CONCURRENTLY IF NOT EXISTS "Message_createdAt_idx" ON "Message"("createdAt");
"""),
    # -- destructive -----------------------------------------------------------------
    "20240501000000_drop_column": (DESTRUCTIVE, False, """
/*
  Warnings:

  - You are about to drop the column `name` on the `User` table. All the data in the column will be lost.

*/
-- AlterTable
ALTER TABLE "User" DROP COLUMN "name";
"""),
    "20240502000000_drop_table": (DESTRUCTIVE, False, """
-- DropForeignKey
ALTER TABLE "Upload" DROP CONSTRAINT "Upload_ownerId_fkey";

-- DropTable
DROP TABLE "Upload";
"""),
    "20240503000000_change_type": (DESTRUCTIVE, False, """
-- AlterTable
ALTER TABLE "Upload" ALTER COLUMN "size" SET DATA TYPE BIGINT;
"""),
    "20240504000000_rename_column": (DESTRUCTIVE, False, """
-- AlterTable
ALTER TABLE "User" RENAME COLUMN "name" TO "displayName";
"""),
    "20240505000000_required_column": (DESTRUCTIVE, False, """
/*
  Warnings:

  - Added the required column `teamId` to the `User` table without a default value. This is not possible if the table is not empty.

*/
-- AlterTable
ALTER TABLE "User" ADD COLUMN     "teamId" TEXT NOT NULL;
"""),
    "20240506000000_make_required": (DESTRUCTIVE, False, """
-- AlterTable
ALTER TABLE "Upload" ALTER COLUMN "mimeType" SET NOT NULL;
"""),
    "20240507000000_unique_on_existing": (DESTRUCTIVE, False, """
-- CreateIndex
CREATE UNIQUE INDEX "User_name_key" ON "User"("name");
"""),
    "20240508000000_enum_change": (DESTRUCTIVE, False, """
-- AlterEnum
BEGIN;
CREATE TYPE "Role_new" AS ENUM ('ATHLETE', 'COACH');
ALTER TABLE "User" ALTER COLUMN "role" DROP DEFAULT;
ALTER TABLE "User" ALTER COLUMN "role" TYPE "Role_new" USING ("role"::text::"Role_new");
ALTER TYPE "Role" RENAME TO "Role_old";
ALTER TYPE "Role_new" RENAME TO "Role";
DROP TYPE "Role_old";
ALTER TABLE "User" ALTER COLUMN "role" SET DEFAULT 'ATHLETE';
COMMIT;
"""),
    # -- locking ---------------------------------------------------------------------
    "20240601000000_index_on_big_table": (LOCKING, True, """
-- CreateIndex
CREATE INDEX "Message_senderId_createdAt_idx" ON "Message"("senderId", "createdAt");
"""),
    "20240602000000_volatile_default": (LOCKING, True, """
-- AlterTable
ALTER TABLE "Message" ADD COLUMN     "publicId" UUID NOT NULL DEFAULT gen_random_uuid();
"""),
    "20240603000000_fk_on_big_table": (LOCKING, True, """
-- AddForeignKey
ALTER TABLE "Message" ADD CONSTRAINT "Message_teamId_fkey" FOREIGN KEY ("teamId") REFERENCES "Team"("id") ON DELETE SET NULL ON UPDATE CASCADE;
"""),
    "20240604000000_default_then_not_null": (LOCKING, True, """
ALTER TABLE "Message" ALTER COLUMN "kind" SET DEFAULT 'text';
UPDATE "Message" SET "kind" = 'text' WHERE "kind" IS NULL;
ALTER TABLE "Message" ALTER COLUMN "kind" SET NOT NULL;
"""),
}


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_each_migration_of_the_corpus_gets_its_verdict(name):
    level, previous_ok, script = CORPUS[name]
    verdict = classify(name, script, Tables(rows=dict(ROWS)))
    assert (verdict.level, verdict.previous_ok) == (level, previous_ok), verdict.findings


def test_a_drop_column_names_the_table_column_and_what_breaks_in_the_previous_release():
    verdict = classify("m", CORPUS["20240501000000_drop_column"][2], Tables(rows=dict(ROWS)))
    [finding] = verdict.findings
    assert (finding.rule, finding.line) == ("drop-column", 9)
    assert "User.name" in finding.message
    assert verdict.previous_breaks == ["it still reads or writes User.name"]


def test_an_index_on_a_small_table_is_safe_and_on_an_unknown_one_locking():
    script = CORPUS["20240601000000_index_on_big_table"][2]
    assert classify("m", script, Tables(rows={"Message": 40})).level == SAFE
    unknown = classify("m", script, Tables(rows=None))
    assert unknown.level == LOCKING and "size unknown" in unknown.findings[0].message


def test_tables_made_by_an_earlier_pending_migration_are_new_for_the_later_ones():
    tables = Tables(rows={})
    classify("a", 'CREATE TABLE "Reaction" ("id" TEXT NOT NULL);', tables)
    later = classify("b", 'ALTER TABLE "Reaction" ADD COLUMN "emoji" TEXT NOT NULL;\n'
                          'CREATE UNIQUE INDEX "Reaction_emoji_key" ON "Reaction"("emoji");', tables)
    assert later.level == SAFE


def test_truncate_and_delete_are_destructive_update_of_a_big_table_is_locking():
    tables = Tables(rows=dict(ROWS))
    assert [f.rule for f in classify("m", 'TRUNCATE "Upload"; DELETE FROM "User" WHERE "id" = \'x\';',
                                     tables).findings] == ["truncate", "delete"]
    assert classify("m", 'UPDATE "Message" SET "kind" = \'a\';', tables).level == LOCKING


def test_the_splitter_keeps_semicolons_inside_strings_dollar_bodies_and_comments():
    script = ("-- a comment; with a semicolon\nINSERT INTO t VALUES ('a;b', \"x;y\");\n"
              "CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql;\n/* c; /* nested; */ */ SELECT 2")
    statements = split(script)
    assert [s.text for s in statements] == [
        "INSERT INTO t VALUES ('a;b', \"x;y\")",
        "CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql",
        "SELECT 2",
    ]
    assert [s.line for s in statements] == [2, 3, 4]


def test_identifiers_are_unquoted_and_unquoted_ones_fold_to_lower_case():
    assert unquote_ident('"User"') == "User"
    assert unquote_ident('public."User"') == "User"
    assert unquote_ident("Users") == "users"
    assert unquote_ident('"a""b"') == 'a"b'
