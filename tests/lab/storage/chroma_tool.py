"""Seed and describe a Chroma collection through the real client (run with the Chroma virtualenv's python).

    chroma_tool.py --port 8000 seed --collection docs --count 500 --dimensions 384 --seed 7
    chroma_tool.py --port 8000 describe --collection docs --dimensions 384 --seed 7

Embeddings are always passed: without them Chroma would fetch its default embedding model from the internet.
``describe`` prints one JSON object: the count, and the ids of the 5 nearest neighbours of a few fixed queries,
so two servers (the live one and one on a restored copy) can be compared.
"""

import argparse
import json
import random
import sys

import chromadb

BATCH = 250
QUERIES = 3
NEIGHBOURS = 5


def vectors(seed: int, count: int, dimensions: int) -> list[list[float]]:
    generator = random.Random(seed)
    values = [generator.uniform(-1.0, 1.0) for _index in range(count * dimensions)]
    return [values[start:start + dimensions] for start in range(0, len(values), dimensions)]


def seed(client, args) -> dict:
    collection = client.get_or_create_collection(args.collection, metadata={"hnsw:space": "l2"})
    if collection.count() == args.count:
        return {"changed": False, "count": args.count}
    embeddings = vectors(args.seed, args.count, args.dimensions)
    for start in range(0, args.count, BATCH):
        ids = [f"doc-{index:05d}" for index in range(start, min(start + BATCH, args.count))]
        collection.upsert(ids=ids, embeddings=embeddings[start:start + len(ids)],
                          documents=[f"document {identifier}" for identifier in ids],
                          metadatas=[{"position": start + offset} for offset in range(len(ids))])
    return {"changed": True, "count": collection.count()}


def describe(client, args) -> dict:
    collection = client.get_collection(args.collection)
    queries = vectors(args.seed + 1000, QUERIES, args.dimensions)
    answer = collection.query(query_embeddings=queries, n_results=NEIGHBOURS, include=["distances"])
    return {"count": collection.count(), "neighbours": answer["ids"],
            "distances": [[round(value, 5) for value in row] for row in answer["distances"]]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("seed", "describe"):
        command = commands.add_parser(name)
        command.add_argument("--collection", required=True)
        command.add_argument("--dimensions", type=int, required=True)
        command.add_argument("--seed", type=int, required=True)
        if name == "seed":
            command.add_argument("--count", type=int, required=True)
    args = parser.parse_args(argv)
    client = chromadb.HttpClient(host=args.host, port=args.port)
    result = seed(client, args) if args.command == "seed" else describe(client, args)
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
