"""mongoengine models against one cairnd: the ODM creates a model's indexes on its first save
(`unique=True`, `unique_with`, and `meta['indexes']` with compound, descending, sparse, TTL and
embedded-field keys); they are listed by listIndexes with those options, compare_indexes finds
nothing missing, and a duplicate of a unique field is refused (NotUniqueError on save, insert
and update, mongoengine's BulkWriteError for a batch), leaving one document, never two."""

import datetime

import pytest

me = pytest.importorskip("mongoengine")  # scripts/setup.sh installs it into the venv

DB = "mongoengine_models"
ALIAS = "cairn_me"


class Address(me.EmbeddedDocument):
    city = me.StringField()


class Account(me.Document):
    email = me.StringField(required=True, unique=True)
    username = me.StringField(unique_with="org")
    org = me.StringField()
    name = me.StringField()
    age = me.IntField()
    tags = me.ListField(me.StringField())
    created = me.DateTimeField(default=lambda: datetime.datetime.now(datetime.timezone.utc))
    address = me.EmbeddedDocumentField(Address)
    meta = {
        "db_alias": ALIAS,
        "collection": "accounts",
        "indexes": [
            "name",
            ("-age", "name"),
            {"fields": ["tags"], "sparse": True},
            {"fields": ["created"], "expireAfterSeconds": 3600},
            "address.city",
        ],
    }


class Plain(me.Document):
    """No unique field: a model whose only index is meta's, saved many times."""
    sku = me.StringField()
    meta = {"db_alias": ALIAS, "collection": "plain", "indexes": ["sku"]}


@pytest.fixture(scope="module")
def mdb(server, client):
    client.drop_database(DB)
    conn = me.connect(db=DB, alias=ALIAS, host=server.uri, uuidRepresentation="standard")
    yield conn[DB]
    me.disconnect(alias=ALIAS)


def listed(db, coll):
    return {ix["name"]: {k: v for k, v in ix.items() if k not in ("v", "ns")}
            for ix in db[coll].list_indexes()}


def test_first_save_creates_the_model_indexes(mdb):
    assert "accounts" not in mdb.list_collection_names()
    Account(email="a@x", username="ann", org="o1", name="Ann", age=30, tags=["t"],
            address=Address(city="Oslo")).save()
    ix = listed(mdb, "accounts")
    assert ix["email_1"]["key"] == {"email": 1} and ix["email_1"]["unique"] is True
    assert ix["username_1_org_1"]["key"] == {"username": 1, "org": 1}
    assert ix["username_1_org_1"]["unique"] is True
    assert ix["name_1"]["key"] == {"name": 1}
    assert ix["age_-1_name_1"]["key"] == {"age": -1, "name": 1}
    assert ix["tags_1"]["sparse"] is True
    assert ix["created_1"]["expireAfterSeconds"] == 3600
    assert ix["address.city_1"]["key"] == {"address.city": 1}
    assert Account.compare_indexes() == {"missing": [], "extra": []}
    # The planner uses them: the equality on the embedded field is an index scan.
    plan = mdb.accounts.find({"address.city": "Oslo"}).explain()
    assert "IXSCAN" in str(plan["queryPlanner"]["winningPlan"])
    assert Account.objects(address__city="Oslo").count() == 1


def test_duplicate_unique_field_is_refused_on_save(mdb):
    Account(email="dup@x", username="u1", org="o1").save()
    with pytest.raises(me.NotUniqueError):
        Account(email="dup@x", username="u2", org="o1").save()
    assert Account.objects(email="dup@x").count() == 1
    # unique_with: the same username is fine in another org, not in the same one.
    Account(email="other@x", username="u1", org="o2").save()
    with pytest.raises(me.NotUniqueError):
        Account(email="third@x", username="u1", org="o1").save()
    assert Account.objects(username="u1").count() == 2


def test_duplicate_refused_on_update_and_batch_insert(mdb):
    a = Account(email="b1@x", username="b1", org="b").save()
    Account(email="b2@x", username="b2", org="b").save()
    with pytest.raises(me.NotUniqueError):
        Account.objects(id=a.id).update_one(set__email="b2@x")
    a.email = "b2@x"
    with pytest.raises(me.NotUniqueError):
        a.save()
    assert Account.objects.get(id=a.id).email == "b1@x"
    with pytest.raises(me.NotUniqueError):
        Account.objects.insert(Account(email="b1@x", username="b9", org="b"))
    # A batch: mongoengine reports pymongo's BulkWriteError as its own, as against mongod.
    with pytest.raises(me.errors.BulkWriteError) as exc:
        Account.objects.insert([Account(email="b3@x", username="b3", org="b"),
                                Account(email="b3@x", username="b4", org="b")])
    assert "'code': 11000" in str(exc.value) and "'nInserted': 1" in str(exc.value)
    assert Account.objects(email="b3@x").count() == 1  # ordered: the first went in
    assert mdb.command("validate", "accounts")["valid"] is True


def test_later_saves_keep_working_and_indexes_stay(mdb):
    for i in range(50):
        Plain(sku="s%d" % (i % 5)).save()
    assert Plain.objects(sku="s3").count() == 10
    assert set(listed(mdb, "plain")) == {"_id_", "sku_1"}
    # Re-ensuring indexes (every process start does it) is a no-op, not an error.
    Plain.ensure_indexes()
    Account.ensure_indexes()
    assert set(listed(mdb, "plain")) == {"_id_", "sku_1"}
    assert Account.compare_indexes() == {"missing": [], "extra": []}
