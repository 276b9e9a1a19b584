async def test_account_answers_with_the_key_it_was_created_with(client, account):
    response = await client.get("/v1/account", headers=account.headers)
    assert response.status_code == 200
    assert response.json()["id"] == account.id
